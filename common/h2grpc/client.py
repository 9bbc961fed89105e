"""A reader for one server-streaming gRPC call on a connection of its own: how GetFlows is read, fast.

grpcio hands a Python client one message per trip through its core (~40-50 µs of CPU a message). Here the
stream's bytes come in with reads of up to 256 KiB, h2 keeps HTTP/2's state, and the messages of a whole read come out
at once (`Stream.batches()`), so a flow costs little more than its bytes. The call keeps grpcio's meaning:
iterating yields each message's bytes in order, and a call that ends other than OK raises a StreamError, a
grpc.RpcError with code() and details() as grpcio would have given them, so `except grpc.RpcError` code
paths stay as they are.

The connection is made when the stream is first read, on the reading thread: a `cancel()` from another thread
then stops even a connect in progress. The stream's windows are large (16 MiB) and given back in bulk, so the
server is never held back by this reader; what it sends is only held back by how fast we read. With
`keepalive_s`, an idle stream PINGs the server and a server that does not answer within twice that ends the
stream UNAVAILABLE (a node that froze or whose network went away, which no reset will ever report).

The parts: target.py makes the connection, keepalive.py keeps the deadline and the pings, stream_errors.py
says how a call ended in grpcio's terms; this file is the stream: the request out, the frames in, the end.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from flowscope.common.h2grpc.keepalive import Due, Timers
from flowscope.common.h2grpc.messages import (
    MAX_MESSAGE,
    MessageSplitter,
    ProtocolError,
    decode_details,
    format_timeout,
    framed,
    status_code,
)
from flowscope.common.h2grpc.stream_errors import (
    CANCELLED_DETAILS,
    Metadata,
    StreamError,
    goaway_error,
    http_status_code,
    reset_error,
)
from flowscope.common.h2grpc.target import connect, parse_target
from flowscope.common.tls import ClientTLS

WINDOW = 16 * 1024 * 1024  # what the server may send before we say we read it
READ_SIZE = 256 * 1024  # ~600 flows a read: what one reader of one stream takes at a time (open_stream's read_size)
USER_AGENT = "flowscope-h2grpc/1"
DATA, END_STREAM, PADDED = 0x0, 0x1, 0x8  # the DATA frame's type and flags (RFC 9113 section 6.1)
GOAWAY = 0x7


class Stream:
    """One server-streaming call's responses, as bytes; see the module docstring."""

    def __init__(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        tls: ClientTLS | None,
        server_name: str,
        trust: bytes | None,
        timeout: float | None,
        metadata: Sequence[tuple[str, str]],
        keepalive_s: float | None,
        connect_timeout: float,
        max_message: int,
        read_size: int,
    ) -> None:
        self._target = target
        self._method = method
        self._request = request
        self._tls = tls
        self._server_name = server_name
        self._trust = trust
        self._timers = Timers(timeout, keepalive_s)
        self._metadata = tuple(metadata)
        self._connect_timeout = connect_timeout
        self._splitter = MessageSplitter(max_message)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._h2: h2.connection.H2Connection | None = None
        self._stream_id = 0
        self._cancelled = False
        self._started = False
        self._ended = False
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._initial: Metadata = ()
        self._trailing: Metadata = ()
        self._status_seen = False
        self._unacknowledged = 0
        self._frames = bytearray()  # received bytes not yet a whole frame
        self._inbox = memoryview(bytearray(read_size))
        self._read_timeout: float | None = None
        self._outgoing = b""  # what of the request the server's window has not taken yet
        self._receiving = False  # the response's headers came: DATA frames are ours to read

    # What grpcio's call object offers.

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    def is_active(self) -> bool:
        return not self._ended

    def initial_metadata(self) -> Metadata:
        return self._initial

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def cancel(self) -> None:
        """From any thread: the call ends CANCELLED; a read blocked on the socket returns at once."""
        if self._ended:
            return
        self._cancelled = True
        sock = self._sock
        if sock is None:
            return
        if not isinstance(sock, ssl.SSLSocket):  # one TLS object may not be written while another thread reads it
            with self._lock:
                self._send_reset(h2.errors.ErrorCodes.CANCEL)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the socket's own shutdown: no TLS close_notify

    def __iter__(self) -> Iterator[bytes]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[bytes]]:
        """The messages a read from the socket completed, a list at a time, until the call ends."""
        try:
            self._start()
            while not self._ended:
                messages = self._read()
                if messages:
                    yield messages
        finally:
            if not self._ended:  # the reader stopped reading before the end: that is a cancel
                self._cancelled = True
                self._end(grpc.StatusCode.CANCELLED, CANCELLED_DETAILS)
            self._close()
        if self._code is not grpc.StatusCode.OK:
            assert self._code is not None
            raise StreamError(self._code, self._details or "", self._trailing)

    # Opening the call.

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._cancelled:
            self._end(grpc.StatusCode.CANCELLED, CANCELLED_DETAILS)
            return
        try:
            address = parse_target(self._target)
        except ValueError as exc:
            self._end(grpc.StatusCode.UNAVAILABLE, str(exc))
            return
        try:
            sock = connect(
                address,
                tls=self._tls,
                trust=self._trust,
                server_name=self._server_name,
                timeout=self._connect_timeout,
                deadline=self._timers.deadline,
                opened=self._opened,
            )
        except StreamError as exc:
            self._end(exc.code(), exc.details())
            return
        self._sock = sock
        if self._cancelled:  # cancelled while connecting
            self._end(grpc.StatusCode.CANCELLED, CANCELLED_DETAILS)
            return
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        conn = self._h2 = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(WINDOW - 65_535)  # the connection's window, as large as a stream's
        self._stream_id = conn.get_next_available_stream_id()
        secure = isinstance(sock, ssl.SSLSocket)
        headers = [
            (":method", "POST"),
            (":scheme", "https" if secure else "http"),
            (":path", self._method),
            (":authority", self._server_name or address.authority),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("user-agent", USER_AGENT),
        ]
        deadline = self._timers.deadline
        if deadline is not None:
            headers.append(("grpc-timeout", format_timeout(max(0.0, deadline - time.monotonic()))))
        headers += [(name.lower(), value) for name, value in self._metadata]
        conn.send_headers(self._stream_id, headers)
        self._outgoing = framed(self._request)
        self._send_request()
        self._timers.heard()
        with self._lock:
            self._flush()

    def _send_request(self) -> None:
        """As much of the request as the server's windows take (a request larger than them waits for its
        WINDOW_UPDATEs), in frames it accepts; the last one ends our side of the stream."""
        conn = self._h2
        assert conn is not None
        while self._outgoing:
            room = min(conn.local_flow_control_window(self._stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                return
            chunk, self._outgoing = self._outgoing[:room], self._outgoing[room:]
            conn.send_data(self._stream_id, chunk, end_stream=not self._outgoing)

    def _opened(self, sock: socket.socket) -> None:
        self._sock = sock  # a cancel while it connects shuts it down

    # Reading it.

    def _read(self) -> list[bytes]:
        """One read's worth of messages; ends the call when the read says it is over."""
        sock, conn = self._sock, self._h2
        assert sock is not None and conn is not None
        wait = self._timers.wait_s()
        if wait is not None and wait <= 0:
            self._on_timer()
            return []
        if wait is None or self._read_timeout is None or wait < self._read_timeout or wait > 2 * self._read_timeout:
            sock.settimeout(wait)  # a read that wakes a little early only looks again: the timeout rarely changes
            self._read_timeout = wait
        try:
            count = sock.recv_into(
                self._inbox
            )  # into a buffer kept: recv(n) allocates n bytes, ~20 µs a read for 1 MiB
        except TimeoutError:
            self._on_timer()
            return []
        except OSError as exc:
            count = 0
            if not self._cancelled:
                self._lost(exc.strerror or str(exc))
                return []
        if self._cancelled:
            self._end(grpc.StatusCode.CANCELLED, CANCELLED_DETAILS)
            return []
        if not count:
            self._lost("Socket closed")
            return []
        self._timers.heard()
        with self._lock:
            messages = self._route(self._inbox[:count])
            if self._unacknowledged >= WINDOW // 4 and not self._ended:
                self._give_back(self._unacknowledged)
                self._unacknowledged = 0
            self._flush()
        return messages

    def _route(self, data: memoryview) -> list[bytes]:
        """The frames `data` completes, in order: our stream's DATA straight into the message splitter, every
        other frame (headers, trailers, settings, pings, resets, GOAWAY) through h2.

        h2 costs ~15 µs a frame, and a grpcio server sends each message in a frame of its own; reading DATA
        frames here costs ~1 µs. h2 then never sees our DATA, so its count of our windows never shrinks and the
        windows are given back here too (`_give_back`)."""
        buffer = self._frames
        buffer += data
        size, at, control = len(buffer), 0, 0  # control: where the frames h2 has not seen yet begin
        payload = bytearray()
        messages: list[bytes] = []
        mine, receiving = self._stream_id, self._receiving
        while size - at >= 9 and not self._ended:
            length = int.from_bytes(buffer[at : at + 3], "big")
            end = at + 9 + length
            if end > size:
                break
            kind, flags = buffer[at + 3], buffer[at + 4]
            if kind == GOAWAY:  # read here: h2 refuses every frame after one, and a server that goes away
                messages += self._split(payload)  # gracefully still sends our stream's end (and pings)
                payload.clear()
                if control < at:
                    self._to_h2(bytes(buffer[control:at]))
                self._goaway(int.from_bytes(buffer[at + 9 : at + 13], "big") & 0x7FFFFFFF, buffer[at + 13 : end])
                at = control = end
                continue
            ours = kind == DATA and int.from_bytes(buffer[at + 5 : at + 9], "big") & 0x7FFFFFFF == mine
            if ours and control < at:  # the frames before this DATA go first: they may be the response's headers
                messages += self._split(payload)
                payload.clear()
                self._to_h2(bytes(buffer[control:at]))
                control, receiving = at, self._receiving
            if not ours or not receiving or self._ended:
                at = end
                continue
            self._unacknowledged += length
            body, stop = at + 9, end
            if flags & PADDED and length:
                body += 1
                stop -= buffer[at + 9]
            payload += buffer[body:stop]
            at = control = end
            if flags & END_STREAM:
                messages += self._split(payload)
                payload.clear()
                self._ended_without_trailers()
        messages += self._split(payload)
        if control < at and not self._ended:
            self._to_h2(bytes(buffer[control:at]))
        del buffer[:at]
        return messages

    def _split(self, payload: bytearray) -> list[bytes]:
        if not payload or self._ended:
            return []
        try:
            return self._splitter.feed(bytes(payload))
        except ProtocolError as exc:
            self._send_reset(h2.errors.ErrorCodes.CANCEL)
            self._end(exc.code, exc.details)
            return []

    def _to_h2(self, frames: bytes) -> None:
        assert self._h2 is not None
        try:
            events = self._h2.receive_data(frames)
        except h2.exceptions.ProtocolError as exc:
            self._end(grpc.StatusCode.INTERNAL, f"HTTP/2 error from the server: {exc}")
            return
        self._handle(events)

    def _give_back(self, amount: int) -> None:
        """WINDOW_UPDATE for the connection and our stream (caller holds the lock)."""
        increment = amount.to_bytes(4, "big")
        update = b"\x00\x00\x04\x08\x00"
        out = update + b"\x00\x00\x00\x00" + increment + update + self._stream_id.to_bytes(4, "big") + increment
        assert self._sock is not None
        try:
            self._sock.settimeout(self._connect_timeout)
            self._read_timeout = None
            self._sock.sendall(out)
        except OSError:
            pass

    def _handle(self, events: list[h2.events.Event]) -> None:
        mine = self._stream_id
        for event in events:
            if self._ended:
                return
            if isinstance(event, h2.events.DataReceived):  # DATA before the response's headers
                self._send_reset(h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self._end(grpc.StatusCode.INTERNAL, "the server sent data before the response's headers")
            elif isinstance(event, h2.events.ResponseReceived):
                self._response_headers(_text(event.headers), event.stream_ended is not None)
            elif isinstance(event, h2.events.TrailersReceived):
                self._trailers(_text(event.headers))
            elif isinstance(event, h2.events.StreamEnded):
                if event.stream_id == mine:
                    self._ended_without_trailers()
            elif isinstance(event, h2.events.StreamReset):
                if event.stream_id == mine:
                    self._reset_by_server(event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):  # only for GOAWAY of h2's own making
                self._end(grpc.StatusCode.UNAVAILABLE, f"the connection ended: error code {event.error_code}")
        if self._outgoing and not self._ended:
            self._send_request()

    def _response_headers(self, headers: list[tuple[str, str]], ended: bool) -> bool:
        """The response's headers (or all of a trailers-only response); True when they end the call."""
        values = dict(headers)
        status = values.get(":status", "")
        if status != "200":
            self._send_reset(h2.errors.ErrorCodes.CANCEL)
            self._end(http_status_code(status), f"Received http2 header with status: {status}")
            return True
        if ended or "grpc-status" in values:
            self._trailers(headers)
            return True
        if not values.get("content-type", "").startswith("application/grpc"):
            self._send_reset(h2.errors.ErrorCodes.CANCEL)
            self._end(grpc.StatusCode.UNKNOWN, f"invalid content-type: {values.get('content-type', '')!r}")
            return True
        self._initial = tuple((k, v) for k, v in headers if not k.startswith(":"))
        self._receiving = True
        return False

    def _trailers(self, headers: list[tuple[str, str]]) -> None:
        values = dict(headers)
        self._trailing = tuple((k, v) for k, v in headers if not k.startswith(":") and not k.startswith("grpc-"))
        number = values.get("grpc-status")
        if number is None or not number.isdigit():
            self._end(grpc.StatusCode.UNKNOWN, "the server ended the call without a grpc-status")
            return
        code = status_code(int(number))
        details = decode_details(values.get("grpc-message", ""))
        if code is grpc.StatusCode.OK and self._splitter.partial:
            code, details = grpc.StatusCode.INTERNAL, "the stream ended inside a message"
        self._end(code, details)

    def _ended_without_trailers(self) -> None:
        if not self._ended:
            self._end(grpc.StatusCode.INTERNAL, "the server ended the stream without trailers")

    def _reset_by_server(self, error: int) -> None:
        self._fail(reset_error(error))

    def _goaway(self, last_stream_id: int, payload: bytes | bytearray) -> None:
        """A server going away lets the streams it already took end as they will; any other GOAWAY (an error,
        or ours not taken) ends ours now, UNAVAILABLE as gRPC names it."""
        error = int.from_bytes(payload[:4], "big")
        if error == h2.errors.ErrorCodes.NO_ERROR and last_stream_id >= self._stream_id:
            return
        self._send_reset(h2.errors.ErrorCodes.CANCEL)
        self._fail(goaway_error(error, bytes(payload[4:])))

    # Time: the deadline and keepalive.

    def _on_timer(self) -> None:
        due = self._timers.due()
        if due is Due.DEADLINE:
            with self._lock:
                self._send_reset(h2.errors.ErrorCodes.CANCEL)
            self._end(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        elif due is Due.PING:
            with self._lock:
                assert self._h2 is not None
                self._h2.ping(b"keepaliv")
                self._flush()
        elif due is Due.GONE:
            self._end(grpc.StatusCode.UNAVAILABLE, "keepalive watchdog timeout: the server did not answer a ping")

    # Ending it.

    def _lost(self, reason: str) -> None:
        self._end(grpc.StatusCode.UNAVAILABLE, reason)

    def _fail(self, error: StreamError) -> None:
        self._end(error.code(), error.details())

    def _end(self, code: grpc.StatusCode, details: str) -> None:
        if not self._ended:
            self._ended = True
            self._code, self._details = code, details

    def _send_reset(self, error: h2.errors.ErrorCodes) -> None:
        """RST_STREAM for our stream if it is still open (caller holds the lock); a dead socket is no error."""
        conn = self._h2
        if conn is None or self._ended:
            return
        try:
            conn.reset_stream(self._stream_id, error)
        except h2.exceptions.H2Error:
            return
        self._flush()

    def _flush(self) -> None:
        """Send what h2 has queued (caller holds the lock); a socket that broke is noticed by the next read."""
        conn, sock = self._h2, self._sock
        if conn is None or sock is None:
            return
        out = conn.data_to_send()
        if not out:
            return
        try:
            sock.settimeout(self._connect_timeout)
            self._read_timeout = None
            sock.sendall(out)
        except OSError:
            pass

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        conn = self._h2
        if conn is not None and not self._cancelled:  # a cancel already shut the socket down
            with self._lock:
                try:
                    conn.close_connection()
                    sock.settimeout(0.1)
                    sock.sendall(conn.data_to_send())
                except (OSError, h2.exceptions.H2Error):
                    pass
        sock.close()


def _text(headers: Iterable[tuple[str | bytes, str | bytes]]) -> list[tuple[str, str]]:
    """Headers as text (h2 gives text already, as configured; bytes would be a header it could not decode)."""

    def text(value: str | bytes) -> str:
        return value if isinstance(value, str) else value.decode("utf-8", "replace")

    return [(text(name), text(value)) for name, value in headers]


def open_stream(
    target: str,
    method: str,
    request: bytes,
    *,
    tls: ClientTLS | None = None,
    server_name: str = "",
    trust: bytes | None = None,
    timeout: float | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    keepalive_s: float | None = None,
    connect_timeout: float = 5.0,
    max_message: int = MAX_MESSAGE,
    read_size: int = READ_SIZE,
) -> Stream:
    """A server-streaming call of `method` with `request` (its bytes) on a connection of its own to `target`;
    nothing happens until it is read. TLS when `tls` is given (never on a unix socket). `read_size` is the
    stream's read buffer, held (and touched whole) for as long as the stream lasts: a relay holds one per node
    per client and takes a smaller one."""
    return Stream(
        target,
        method,
        request,
        tls=tls,
        server_name=server_name,
        trust=trust,
        timeout=timeout,
        metadata=metadata,
        keepalive_s=keepalive_s,
        connect_timeout=connect_timeout,
        max_message=max_message,
        read_size=read_size,
    )
