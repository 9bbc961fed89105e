"""One followed GetFlows call counted into a table on a daemon thread: what `top` and `map` read.

The screen's thread never waits on the network: it only reads how the stream ended (`ended_at`, with `lost` or
`refused`) and decides whether to ask again (cli/top/screen.py).
"""

from __future__ import annotations

import threading
import time

import grpc

from flowscope.api.observer import observer_pb2
from flowscope.cli.connection import Connection
from flowscope.cli.observe.follow import GET_FLOWS, parse
from flowscope.cli.top.state import FlowTable


class Stream:
    """One GetFlows call feeding one FlowTable from a daemon thread; `stop` cancels it. How it ended is for the
    viewer to read: `ended_at`, and `lost` (why, when asking again may help) or `refused` (when it cannot).
    Read through common/h2grpc (`Connection.stream`), as observe reads it: a read's responses at a time."""

    def __init__(self, connection: Connection, request: observer_pb2.GetFlowsRequest, table: FlowTable) -> None:
        self.table = table
        self._connection = connection
        self._call = connection.stream(GET_FLOWS, request.SerializeToString())
        self.ended_at: float | None = None
        self.received = False  # a response came: the server answered, so the backoff starts over
        self.lost: str | None = None  # why it ended, to be asked again
        self.final = False  # the server refused the request: asking again would only be refused again
        self.refused: str | None = None  # its reason, until the viewer reads it
        threading.Thread(target=self._ingest, name="top-ingest", daemon=True).start()

    def _ingest(self) -> None:
        try:
            for batch in self._call.batches():
                self.received = True
                for data in batch:
                    self.table.add(parse(data))
            self.lost = "the server ended the stream"
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self.final = True
                self.refused = self._connection.error(exc).message
            elif exc.code() != grpc.StatusCode.CANCELLED:
                self.lost = self._connection.error(exc).message
        except Exception as exc:  # a flow this code cannot read: say so in the footer, not over the screen
            self.lost = f"stopped reading flows: {type(exc).__name__}: {exc}"
        finally:
            self.ended_at = time.monotonic()

    def stop(self) -> None:
        self._call.cancel()
