"""One client connection of the Server: a reader thread that feeds h2 and starts calls, a writer thread that
sends what the calls buffered.

The writer sleeps until there is something to send; a handler's send wakes it only when it sleeps, so while it
writes, more responses pile up and go in its next write: a burst of flows leaves in a few large writes, while
a lone flow in follow mode goes at once. Everything that touches h2's state or a call's does it under `lock`;
only the writer writes to the socket, so what h2 produces goes out in order.

PINGs are always answered (h2 acknowledges them) and never counted against the client: a relay pings each
agent every second, also while a stream is idle, to notice one that vanished.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from flowscope.common.h2grpc.call import Call, run
from flowscope.common.h2grpc.messages import ProtocolError, parse_timeout
from flowscope.common.h2grpc.transport import READ_SIZE, Peer, Transport

if TYPE_CHECKING:
    from flowscope.common.h2grpc.server import Server

log = logging.getLogger(__name__)

# Request headers that are the protocol's, not the caller's metadata.
_RESERVED = {b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding"}
MAX_STREAMS = 2**31 - 1
CLOSE_S = 2.0  # how long a closing connection's writer may take to send what it holds


class Connection:
    def __init__(self, server: Server, sock: socket.socket, transport: Transport, peer: Peer) -> None:
        self.server = server
        self.lock = threading.RLock()
        self._sock = sock
        self._transport = transport
        self._peer = peer
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        # As many streams as a client opens (h2 would take 100 and break the connection at the 101st; grpcio
        # sets no limit): the server's maximum_concurrent_rpcs refuses calls past it, one by one.
        self._h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS}
        )
        self._calls: dict[int, Call] = {}
        self._ready: dict[Call, None] = {}  # calls with something to send (insertion-ordered)
        self._stalled: set[Call] = set()  # calls whose data waits for a window
        self._control = False  # h2 holds bytes of its own to send (settings, acks, window updates)
        self._writer_idle = False
        self._work = threading.Condition(self.lock)
        self._closing = False  # stop reading new calls; the writer ends once it has sent what it holds
        self._refusing = False  # GOAWAY sent: new streams are refused
        self._pending = bytearray()  # bytes to send ahead of h2's next ones (our own GOAWAY)
        self._writer = threading.Thread(target=self._write_loop, name="h2grpc-writer", daemon=True)
        self.reader = threading.Thread(target=self._read_loop, name="h2grpc-reader", daemon=True)

    def start(self) -> None:
        with self.lock:
            self._h2.initiate_connection()
            self._control = True
        self._writer.start()
        self.reader.start()

    # What calls and the server ask (the lock held, or taken here).

    def ready(self, call: Call, ended: bool = False) -> None:
        """`call` has something to send: wake the writer if it sleeps. A call waiting for a window waits on,
        unless it `ended` (a reset, or trailers after dropped data, need no window)."""
        if ended:
            self._stalled.discard(call)
        if call not in self._stalled:
            self._ready[call] = None
            self._wake()

    def ended(self, call: Call) -> None:
        self.server.call_ended(call)

    def forget(self, call: Call) -> None:
        """All of `call` is sent (or reset): the connection holds nothing more of it."""
        self._calls.pop(call.stream_id, None)
        self._stalled.discard(call)

    def goaway(self) -> None:
        """Tell the client no new call will be taken here (running ones go on).

        The GOAWAY is written here, not by h2: h2 closes its connection state with one, and then takes any
        frame the client still sends (a PING, a WINDOW_UPDATE for a running stream) as a protocol error that
        it answers with a second GOAWAY (PROTOCOL_ERROR), the running calls cancelled without their trailers.
        With h2 left open, pings are answered and windows grow as before; new streams are refused (`_request`)."""
        with self.lock:
            if not self._refusing:
                self._refusing = True
                self._pending += self._h2.data_to_send() + goaway_frame(self._h2.highest_inbound_stream_id)
                self._control = True
                self._wake()

    def cancel_all(self) -> None:
        """End every running call (the server stops and their grace is over): their handlers are released and
        their callbacks run, and nothing more is sent for them: the connection closes next, which a client
        takes as the server gone (UNAVAILABLE, as from grpcio's server), where a reset would say CANCELLED."""
        with self.lock:
            callbacks = [c for call in list(self._calls.values()) for c in call.end_now(reset=False)]
        run(callbacks)

    def close(self) -> None:
        """Send what is held, then close (the reader ends once the socket does)."""
        with self.lock:
            self._closing = True
            self._wake()

    def abort(self) -> None:
        """Close at once, whatever is unsent (a peer that reads nothing keeps the writer waiting)."""
        _shutdown(self._sock)

    def _wake(self) -> None:
        if self._writer_idle:
            self._writer_idle = False
            self._work.notify()

    # The writer.

    def _write_loop(self) -> None:
        sock, transport = self._sock, self._transport
        try:
            while True:
                with self.lock:
                    while not self._ready and not self._control and not self._closing:
                        self._writer_idle = True
                        self._work.wait()
                    self._writer_idle = False
                    if self._closing and not self._ready and not self._control:
                        break
                    self._control = False
                    data = transport.outbound(self._collect())
                if data:
                    sock.sendall(data)
        except OSError as exc:
            log.debug("a connection from %s broke while sending: %s", self._peer.address, exc)
        finally:
            _shutdown(sock)

    def _collect(self) -> bytes:
        h2conn = self._h2
        pending, self._pending = bytes(self._pending), bytearray()  # what went before, in its order
        ready, self._ready = self._ready, {}
        for call in ready:
            try:
                if call.flush(h2conn):
                    self._stalled.add(call)
            except (h2.exceptions.H2Error, KeyError) as exc:  # the stream closed under it: nothing to send
                log.debug("stream %d of %s: %s", call.stream_id, self._peer.address, exc)
                self.forget(call)
        return pending + h2conn.data_to_send()

    # The reader.

    def _read_loop(self) -> None:
        try:
            while True:
                data = self._sock.recv(READ_SIZE)
                if not data:
                    break
                actions: list[Callable[[], None]] = []
                with self.lock:
                    events = self._h2.receive_data(self._transport.inbound(data))
                    for event in events:
                        self._on(event, actions)
                    self._control = True
                    self._wake()
                for action in actions:
                    action()
        except h2.exceptions.ProtocolError as exc:
            log.debug("%s broke the HTTP/2 protocol: %s", self._peer.address, exc)
        except Exception as exc:
            log.debug("a connection from %s ended: %s", self._peer.address, exc)
        finally:
            self._lost()

    def _lost(self) -> None:
        """The client is gone (or broke the protocol): its calls are cancelled and the sockets closed."""
        with self.lock:
            callbacks = [c for call in list(self._calls.values()) for c in call.end_now(reset=False)]
            self._closing = True
            self._control = True
            self._wake()
        run(callbacks)
        self._writer.join(CLOSE_S)
        _shutdown(self._sock)
        self._writer.join()
        self._sock.close()
        self.server.connection_closed(self)

    def _on(self, event: h2.events.Event, actions: list[Callable[[], None]]) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            call = self._calls.get(event.stream_id)
            if call is not None and call.active:
                try:
                    call.received(event.data)
                except ProtocolError as exc:
                    actions.append(_later(call.end_with(exc.code, exc.details)))
        elif isinstance(event, h2.events.RequestReceived):
            self._request(event.stream_id, event.headers, actions)
        elif isinstance(event, h2.events.StreamEnded):
            call = self._calls.get(event.stream_id)
            if call is not None and call.active:
                if call.request_queue is not None:
                    call.requests_ended()
                elif not call.started:
                    self._start(call, actions)
        elif isinstance(event, h2.events.StreamReset):
            call = self._calls.pop(event.stream_id, None)
            if call is not None:
                actions.append(_later(call.end_now(reset=False)))
                self._stalled.discard(call)
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            stream_id = getattr(event, "stream_id", 0)
            opened = [c for c in self._stalled if not stream_id or c.stream_id == stream_id]
            for call in opened:
                self._stalled.discard(call)
                self._ready[call] = None

    def _request(self, stream_id: int, headers: Any, actions: list[Callable[[], None]]) -> None:
        if self._refusing:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        fields: dict[bytes, bytes] = {}
        metadata: list[tuple[str, Any]] = []
        for name, value in headers:
            if name.startswith(b":") or name in _RESERVED:
                fields[name] = value
            else:
                metadata.append(_metadata(name, value))
        timeout = parse_timeout(fields.get(b"grpc-timeout", b"").decode("ascii", "replace"))
        deadline = None if timeout is None else time.monotonic() + timeout
        method = fields.get(b":path", b"").decode("utf-8", "replace")
        call = Call(self, stream_id, method, tuple(metadata), deadline, self._peer)
        self._calls[stream_id] = call
        if not fields.get(b"content-type", b"").startswith(b"application/grpc"):
            actions.append(_later(call.end_with(grpc.StatusCode.INTERNAL, "content-type is not application/grpc")))
            return
        refusal = self.server.admit(call)
        if refusal is not None:
            actions.append(_later(call.end_with(*refusal)))
            return
        if call.handler is not None and call.handler.request_streaming:
            call.request_queue = queue.SimpleQueue()
            self._start(call, actions)

    def _start(self, call: Call, actions: list[Callable[[], None]]) -> None:
        call.started = True
        actions.append(lambda: self.server.run(call))


def goaway_frame(last_stream_id: int, error: int = 0) -> bytes:
    """A GOAWAY frame (RFC 9113 section 6.8): the last stream the server took, and why it goes (NO_ERROR)."""
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + last_stream_id.to_bytes(4, "big") + error.to_bytes(4, "big")


def _metadata(name: bytes, value: bytes) -> tuple[str, Any]:
    key = name.decode("ascii", "replace")
    if key.endswith("-bin"):
        try:
            return key, base64.b64decode(value + b"=" * (-len(value) % 4))
        except binascii.Error:  # not base64: the bytes as they came, rather than the connection dropped
            return key, value
    return key, value.decode("utf-8", "replace")


def _later(callbacks: list[Callable[[], None]]) -> Callable[[], None]:
    """The callbacks of a call the client ended, run in a thread of their own: one may take a while (ending
    a packet-path session detaches tracepoints), and the reader must go on answering PINGs meanwhile."""
    if not callbacks:
        return lambda: None
    return threading.Thread(target=run, args=(callbacks,), name="h2grpc-callbacks", daemon=True).start


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
