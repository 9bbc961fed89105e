"""How many flow streams a server holds at once, and what becomes of one whose client stopped reading.

flowscope's gRPC servers are synchronous: each GetFlows stream holds one of the server's threads for as long
as it lasts, and a send waits while the client's HTTP/2 window is full. So, for the agent and the relay alike:

- a server serves at most `limit` flow streams (MAX_FLOW_STREAMS); the next one is refused at once with
  RESOURCE_EXHAUSTED and a sentence saying so, never queued or left hanging. Unary calls (status, nodes,
  health) have UNARY_THREADS threads beside the streams, so a full server still answers them;
- a client that reads nothing costs the server little: the agent's ring and the relay's bounded client buffer
  go on without it (it is told what it missed with a LostEvent once it reads again), and once a send has
  waited `stall_s` (STALL_S, 30 s; `--stall-timeout`) the stream is ended, freeing its thread and what gRPC
  buffered for it. gRPC's synchronous server can end a stream blocked in a send only by cancelling it, so
  that client sees CANCELLED after the responses it had been sent; the server logs the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import TypeVar

import grpc

log = logging.getLogger(__name__)

MAX_FLOW_STREAMS = 256
UNARY_THREADS = 16
STALL_S = 30.0

T = TypeVar("T")


@dataclass(eq=False)  # each stream is itself: kept in a set by identity
class _Stream:
    context: grpc.ServicerContext
    sending_since: float | None = None  # when the send now waiting began; None while the stream makes a response


class FlowStreams:
    """A server's flow streams: counted against a cap, and watched for a client that stopped reading."""

    def __init__(self, limit: int = MAX_FLOW_STREAMS, stall_s: float = STALL_S) -> None:
        if limit < 1 or stall_s <= 0:
            raise ValueError("a server needs room for one stream and a stall timeout above 0")
        self.limit = limit
        self.stall_s = stall_s
        self.ended_stalled = 0  # streams ended because their client read nothing for stall_s
        self._open: set[_Stream] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def open(self) -> int:
        return len(self._open)

    def executor(self, prefix: str) -> futures.ThreadPoolExecutor:
        """The thread pool of a server with these streams (gRPC's maximum_concurrent_rpcs: `max_rpcs`)."""
        return futures.ThreadPoolExecutor(max_workers=self.max_rpcs, thread_name_prefix=prefix)

    @property
    def max_rpcs(self) -> int:
        return self.limit + UNARY_THREADS

    def serve(self, responses: Iterator[T], context: grpc.ServicerContext) -> Iterator[T]:
        """`responses`, sent as one stream of this server: refused past the cap, ended once its client stalls."""
        stream = _Stream(context)
        with self._lock:
            full = len(self._open) >= self.limit
            if not full:
                self._open.add(stream)
                self._start_watchdog()
        if full:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this server serves at most {self.limit} flow streams at once and all are taken; "
                "try again once one ends",
            )
        try:
            for response in responses:
                stream.sending_since = time.monotonic()
                yield response
                stream.sending_since = None
        finally:
            with self._lock:
                self._open.discard(stream)

    def close(self) -> None:
        self._closed.set()

    def _start_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="stall-watch", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        """Ends each stream whose current send has waited stall_s; looks a few times per stall_s."""
        while not self._closed.wait(min(1.0, self.stall_s / 4)):
            now = time.monotonic()
            with self._lock:
                stalled = [s for s in self._open if now - (s.sending_since or now) >= self.stall_s]
                for stream in stalled:
                    self._open.discard(stream)
                self.ended_stalled += len(stalled)
            for stream in stalled:
                log.warning("a client read nothing for %.0f s: its flow stream is ended", self.stall_s)
                stream.context.cancel()
