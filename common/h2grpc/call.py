"""One call on a server connection: its stream's state, the messages it has to send, and how it ends.

A handler's thread appends each framed response to the call's outbound buffer and only wakes the connection's
writer (common/h2grpc/connection.py), which takes what every call buffered and sends it in large DATA frames
as the peer's windows allow. The buffer is bounded (BUFFER_BYTES): past it the handler's send waits, which is
what a slow reader costs a handler, and what common/streams.py watches as a stall. Everything here runs under
the connection's lock; callbacks run outside it, once the call has ended, however it ended.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import h2.connection
import h2.errors
import h2.exceptions

from flowscope.common.h2grpc.messages import MessageSplitter, encode_details, status_number
from flowscope.common.h2grpc.transport import Peer

if TYPE_CHECKING:
    from flowscope.common.h2grpc.connection import Connection

log = logging.getLogger(__name__)

BUFFER_BYTES = 1024 * 1024  # a call's responses waiting for the wire; past this its handler's send waits
RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))
Metadata = tuple[tuple[str, Any], ...]
_END = object()  # the end of a streaming request, in its queue


def metadata_headers(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Metadata as headers: a `-bin` key's value is base64 (unpadded, as grpc sends it), others are text."""
    headers = []
    for key, value in metadata:
        name = key.lower().encode()
        if name.endswith(b"-bin"):
            raw = value if isinstance(value, bytes) else str(value).encode()
            headers.append((name, base64.b64encode(raw).rstrip(b"=")))
        else:
            headers.append((name, value if isinstance(value, bytes) else str(value).encode()))
    return headers


class Call:
    def __init__(
        self,
        connection: Connection,
        stream_id: int,
        method: str,
        metadata: Metadata,
        deadline: float | None,
        peer: Peer,
    ) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.active = True  # until the call ends: handler done, cancelled, reset, deadline, connection lost
        self.started = False  # its handler was handed to the executor
        self.space = threading.Condition(connection.lock)  # a handler waiting for room in the buffer
        self.splitter = MessageSplitter()
        self.requests: list[bytes] = []  # a unary call's request
        self.request_queue: queue.SimpleQueue[Any] | None = None  # a streaming call's requests, as they come
        self.handler: grpc.RpcMethodHandler | None = None
        self._outbound: list[bytes] = []
        self._buffered = 0
        self._headers: list[tuple[bytes, bytes]] | None = None  # initial metadata not yet sent
        self._headers_sent = False
        self._trailers: list[tuple[bytes, bytes]] | None = None  # the status, sent once the messages are
        self._reset = False  # send RST_STREAM(CANCEL) instead of anything else
        self._callbacks: list[Callable[[], None]] = []

    # From the handler's thread.

    def send_message(self, framed: bytes) -> bool:
        """Queue one framed response; waits while the buffer is full. False once the call has ended."""
        with self.connection.lock:
            while self._buffered >= BUFFER_BYTES and self.active:
                self.space.wait()
            if not self.active:
                return False
            self._outbound.append(framed)
            self._buffered += len(framed)
            self.connection.ready(self)
            return True

    def send_headers(self, metadata: Metadata) -> None:
        with self.connection.lock:
            if self.active and not self._headers_sent and self._headers is None:
                self._headers = metadata_headers(metadata)
                self.connection.ready(self)

    def finish(self, code: grpc.StatusCode, details: str | None, trailing: Metadata = ()) -> None:
        """End the call with a status, sent after the responses it has queued."""
        with self.connection.lock:
            callbacks = self.end_with(code, details, trailing)
        run(callbacks)

    def cancel(self, reset: bool) -> None:
        """End the call now: drop what is unsent, and tell the client (RST_STREAM) when `reset`."""
        with self.connection.lock:
            callbacks = self.end_now(reset)
        run(callbacks)

    def expire(self) -> None:
        """The deadline passed: what is unsent is dropped and the client told DEADLINE_EXCEEDED."""
        with self.connection.lock:
            if self.active:
                self._outbound.clear()
                self._buffered = 0
            callbacks = self.end_with(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        run(callbacks)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self.connection.lock:
            if not self.active:
                return False
            self._callbacks.append(callback)
            return True

    def request_iterator(self, deserializer: Callable[[bytes], Any] | None) -> Iterator[Any]:
        """A streaming call's requests as they come; ends with the client's half or with the call."""
        assert self.request_queue is not None
        while True:
            item = self.request_queue.get()
            if item is _END:
                return
            yield deserializer(item) if deserializer else item

    # From the connection (its lock held): each returns the callbacks to run once the lock is released.

    def end_with(self, code: grpc.StatusCode, details: str | None, trailing: Metadata = ()) -> list[Callable[[], None]]:
        if not self.active:
            return []
        trailers = [(b"grpc-status", str(status_number(code)).encode())]
        if details:
            trailers.append((b"grpc-message", encode_details(details).encode()))
        self._trailers = trailers + metadata_headers(trailing)
        return self._ended()

    def end_now(self, reset: bool) -> list[Callable[[], None]]:
        if not self.active:
            return []
        self._outbound.clear()
        self._buffered = 0
        self._reset = reset
        return self._ended()

    def _ended(self) -> list[Callable[[], None]]:
        self.active = False
        self.space.notify_all()
        if self.request_queue is not None:
            self.request_queue.put(_END)
        self.connection.ready(self, ended=True)
        self.connection.ended(self)
        callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def requests_ended(self) -> None:
        assert self.request_queue is not None
        self.request_queue.put(_END)

    def received(self, data: bytes) -> None:
        """A DATA frame's bytes; a message past the limit ends the call (RESOURCE_EXHAUSTED)."""
        messages = self.splitter.feed(data)
        if self.request_queue is not None:
            for message in messages:
                self.request_queue.put(message)
        else:
            self.requests.extend(messages)

    def flush(self, h2conn: h2.connection.H2Connection) -> bool:
        """Hand h2 what can go now: headers, as much data as the windows allow, then the trailers.
        True when data is left waiting for a window; the call is forgotten once all is sent."""
        stream_id = self.stream_id
        if self._reset:
            with contextlib.suppress(h2.exceptions.H2Error):  # the stream may have closed already
                h2conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self.connection.forget(self)
            return False
        if not self._headers_sent and (self._outbound or self._headers is not None):
            h2conn.send_headers(stream_id, [*RESPONSE_HEADERS, *(self._headers or ())])
            self._headers_sent = True
        if self._outbound:
            data = self._outbound[0] if len(self._outbound) == 1 else b"".join(self._outbound)
            window = h2conn.local_flow_control_window(stream_id)
            frame = h2conn.max_outbound_frame_size
            sent, size = 0, len(data)
            while sent < size and window > 0:
                chunk = min(frame, window, size - sent)
                h2conn.send_data(stream_id, data[sent : sent + chunk])
                sent += chunk
                window -= chunk
            self._outbound = [data[sent:]] if sent < size else []
            self._buffered = size - sent
            self.space.notify_all()
            if self._outbound:
                return True
        if self._trailers is not None:
            if self._headers_sent:
                h2conn.send_headers(stream_id, self._trailers, end_stream=True)
            else:  # trailers-only: one HEADERS frame says it all
                h2conn.send_headers(stream_id, [*RESPONSE_HEADERS, *self._trailers], end_stream=True)
            self._trailers = None
            self.connection.forget(self)
        return False


def run(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a callback's failure is its own; the others still run
            log.exception("a call's callback failed")
