"""Reading a GetFlows stream for `observe`: the call is read on a daemon thread and the main thread only waits for
what it hands over (see cli/interrupts.py for why), and a followed stream outlives its server going away.

The stream is read through common/h2grpc (`Connection.stream`), not grpcio: the reader thread hands over the
responses of each read from the socket as one batch of their bytes, which go to the printer as they are (the
json printer writes a flow from its bytes, never parsing it), so a flow costs its printing and little else
(grpcio's Python API costs ~40-50 µs of CPU per message).

When the server of `observe -f` goes away (an agent or relay killed, restarted), the stream is asked for again
with backoff (1, 2, 4, 8, then every 10 s), one line on stderr for each state: the loss, each wait, the
resumption. The stream resumes just after the last flow printed (or, when none was, with the request first
sent, whose backfill was never printed), so nothing shows twice. Ctrl-C ends it at once, waiting or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from flowscope.api.observer import observer_pb2
from flowscope.cli.connection import Connection
from flowscope.cli.interrupts import Interrupts, Stop
from flowscope.common.backoff import Backoff

if TYPE_CHECKING:
    from flowscope.common.h2grpc.client import Stream

GET_FLOWS = "/observer.Observer/GetFlows"


def backoff() -> Backoff:
    """The CLI's schedule for a followed stream whose server went away (`observe -f`, `top`): 1, 2, 4, 8, then
    every 10 s. A person is watching: the first retry comes soon, a long outage costs a line every 10 s, and one
    client has no crowd to spread out from, so no jitter (the waits it names are the waits it makes)."""
    return Backoff(initial=1.0, maximum=10.0, factor=2.0, jitter=0.0)


@dataclass(frozen=True)
class Ended:
    """The reader thread's last word: None when the server ended the stream, else how the call failed."""

    error: grpc.RpcError | None


def read(connection: Connection, request: observer_pb2.GetFlowsRequest, interrupts: Interrupts) -> Stream:
    """Start the call and a daemon thread that puts each read's responses (a list of their bytes), then `Ended`,
    in `interrupts.inbox`."""
    call = connection.stream(GET_FLOWS, request.SerializeToString())

    def pump() -> None:
        try:
            for batch in call.batches():
                interrupts.inbox.put(batch)
        except grpc.RpcError as exc:
            interrupts.inbox.put(Ended(exc))
        else:
            interrupts.inbox.put(Ended(None))

    threading.Thread(target=pump, name="observe-stream", daemon=True).start()
    return call


def batches(
    connection: Connection,
    request: observer_pb2.GetFlowsRequest,
    interrupts: Interrupts,
    say: Callable[[str], None],
) -> Iterator[list[bytes]]:
    """The stream's responses, as bytes, a read at a time, until it ends, a signal stops it or (not following)
    it fails: `connection.error`. Following, a lost connection is retried with backoff, saying so through `say`."""
    retries = backoff()
    last: observer_pb2.GetFlowsResponse | None = None  # the last flow handed out, to resume after it
    while True:
        call = read(connection, resumed(request, last), interrupts)
        try:
            while True:
                item = interrupts.get()
                if isinstance(item, Stop):
                    return
                if isinstance(item, Ended):
                    break
                if retries.attempts:
                    say(f"connection to {connection.target} restored; following again")
                    retries.reset()
                flow = last_flow(item)
                if flow is not None:
                    last = flow
                yield item
        finally:
            call.cancel()  # a no-op on an ended call; it frees the reader thread of one stopped early
        if item.error is None or not request.follow or item.error.code() != grpc.StatusCode.UNAVAILABLE:
            if item.error is not None and item.error.code() != grpc.StatusCode.CANCELLED:
                raise connection.error(item.error)
            return
        what = "connection lost" if retries.attempts == 0 else "still unreachable"
        delay = retries.next()
        say(f"{what}: {connection.error(item.error).message}; retrying in {delay:g}s")
        if isinstance(interrupts.get(delay), Stop):
            return


parse = observer_pb2.GetFlowsResponse.FromString


def last_flow(batch: list[bytes]) -> observer_pb2.GetFlowsResponse | None:
    """The batch's last response that holds a flow (most often its last: one parse a batch)."""
    for data in reversed(batch):
        response = parse(data)
        if response.HasField("flow"):
            return response
    return None


def resumed(
    request: observer_pb2.GetFlowsRequest, last: observer_pb2.GetFlowsResponse | None
) -> observer_pb2.GetFlowsRequest:
    """The request to follow again after `last`, the last flow shown: flows after its time, without a backfill
    count. Before any flow was shown, the request as first sent (its backfill was never printed)."""
    if last is None:
        return request
    again = observer_pb2.GetFlowsRequest()
    again.CopyFrom(request)
    again.number, again.first = 0, False
    after = last.flow.time.ToNanoseconds() + 1  # `since` is inclusive: the last flow shown is not sent again
    again.since.FromNanoseconds(after)
    return again
