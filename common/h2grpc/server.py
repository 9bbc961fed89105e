"""A gRPC server for flowscope's servicers that sends a stream's responses in batches instead of one at a time.

It stands in for the part of grpc.Server the agent and the relay use (handlers, interceptors, ports, TLS,
start/stop) and speaks the same protocol (docs/reference/grpc-http2.md), so the hubble CLI, grpcio clients
and grpcurl see no difference but speed. grpcio's synchronous server costs ~35-40 µs of CPU per streamed
message; here a handler's send appends the framed message to its call's buffer, and a writer per connection
sends all that is buffered in large DATA frames (common/h2grpc/connection.py), a few µs a message.

What grpcio needed options for, this server does by itself:
- PINGs are always allowed, also without calls and as often as a client likes, and never answered with GOAWAY
  (a relay pings each agent every second to notice one that vanished);
- no SO_REUSEPORT, so a second server on a port in use fails to bind instead of silently sharing it.

Threads, not asyncio: the servicers block (a follow stream waits for flows), so each call runs on the
executor, and each connection has a reader and a writer thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from flowscope.common.h2grpc.call import Call
from flowscope.common.h2grpc.connection import Connection
from flowscope.common.h2grpc.context import Aborted, ServicerContext
from flowscope.common.h2grpc.listener import BindError, bind
from flowscope.common.h2grpc.messages import framed
from flowscope.common.h2grpc.transport import TLSTransport, Transport, peer_address
from flowscope.common.tls import ServerTLS

log = logging.getLogger(__name__)

Refusal = tuple[grpc.StatusCode, str]


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, Any], ...]


class Server(grpc.Server):  # a grpc.Server to the generated add_XServicer_to_server functions
    def __init__(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        maximum_concurrent_rpcs: int | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        reuse_port: bool = False,
    ) -> None:
        self._executor = executor
        self._max_calls = maximum_concurrent_rpcs
        self._interceptors = tuple(interceptors)
        self._reuse_port = reuse_port
        self._generic: list[grpc.GenericRpcHandler] = []
        self._registered: dict[str, grpc.RpcMethodHandler] = {}
        self._listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self._connections: set[Connection] = set()
        self._lock = threading.Condition()
        self._calls = 0  # calls admitted whose handlers have not ended
        self._started = False
        self._stopped: threading.Event | None = None
        self._deadlines = _Deadlines()

    # Handlers.

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            self._registered[f"/{service}/{name}"] = handler

    def _find(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._registered.get(details.method)
        if handler is not None:
            return handler
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    def _lookup(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The handler for a call, through the interceptors (the first given is the outermost, as grpcio's)."""
        find: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None] = self._find
        for interceptor in reversed(self._interceptors):
            find = _chained(interceptor, find)
        return find(details)

    # Ports.

    def add_insecure_port(self, address: str) -> int:
        return self._listen(address, None)

    def add_secure_port(self, address: str, tls: ServerTLS | ssl.SSLContext | grpc.ServerCredentials) -> int:
        """TLS from a ServerTLS (or a ready ssl.SSLContext); grpcio's credentials hide their files, so they
        cannot be taken here."""
        if isinstance(tls, grpc.ServerCredentials):
            raise TypeError("give the ServerTLS itself, not its grpcio credentials()")
        context = tls if isinstance(tls, ssl.SSLContext) else tls.ssl_context()
        return self._listen(address, context)

    def _listen(self, address: str, context: ssl.SSLContext | None) -> int:
        """The port bound (1 for a unix socket, as grpcio answers: callers take 0 for a failure); RuntimeError
        when the address cannot be bound, as grpcio."""
        try:
            sockets, port = bind(address, reuse_port=self._reuse_port)
        except BindError as exc:
            raise RuntimeError(f"Failed to bind to address {address}: {exc}") from None
        for sock in sockets:
            self._listeners.append((sock, context))
            if self._started:
                self._accept_in_thread(sock, context)
        return port or 1

    # Life.

    def start(self) -> None:
        self._started = True
        for sock, context in self._listeners:
            self._accept_in_thread(sock, context)

    def _accept_in_thread(self, sock: socket.socket, context: ssl.SSLContext | None) -> None:
        threading.Thread(target=self._accept, args=(sock, context), name="h2grpc-accept", daemon=True).start()

    def _accept(self, listener: socket.socket, context: ssl.SSLContext | None) -> None:
        while True:
            try:
                sock, address = listener.accept()
            except OSError:
                return  # closed by stop()
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._open, args=(sock, address, context), name="h2grpc-reader", daemon=True
            ).start()

    def _open(self, sock: socket.socket, address: Any, context: ssl.SSLContext | None) -> None:
        """Handshake (TLS) and serve one connection, in its reader thread."""
        transport: Transport = Transport()
        if context is not None:
            transport = TLSTransport(context)
            try:
                transport.handshake(sock)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", address, exc)
                sock.close()
                return
        connection = Connection(self, sock, transport, transport.peer(peer_address(sock, address)))
        with self._lock:
            if self._stopped is not None:
                sock.close()
                return
            # Started before a stop() can see it: its wind-down joins the reader (a new connection's lock is
            # nobody else's yet, so taking it under ours cannot deadlock).
            self._connections.add(connection)
            connection.start()

    def connection_closed(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._lock.notify_all()

    def stop(self, grace: float | None) -> threading.Event:
        """Take no new calls (GOAWAY), let running ones end within `grace`, cancel the rest, close everything;
        the event is set once all is done. A unix socket's file stays, for the caller to remove."""
        with self._lock:
            if self._stopped is not None:
                return self._stopped
            self._stopped = stopped = threading.Event()
            connections = list(self._connections)
            self._lock.notify_all()
        for sock, _ in self._listeners:
            _close_listener(sock)
        for connection in connections:
            connection.goaway()
        threading.Thread(target=self._wind_down, args=(grace, stopped), name="h2grpc-stop", daemon=True).start()
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Whether the server stopped within `timeout` (waits for stop() to be called, then to finish)."""
        until = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._stopped is None:
                if until is not None and time.monotonic() >= until:
                    return False
                self._lock.wait(None if until is None else until - time.monotonic())
            stopped = self._stopped
        return stopped.wait(None if until is None else max(0.0, until - time.monotonic()))

    def _wind_down(self, grace: float | None, stopped: threading.Event) -> None:
        until = time.monotonic() + (grace or 0.0)
        with self._lock:
            while self._calls and time.monotonic() < until:
                self._lock.wait(until - time.monotonic())
            connections = list(self._connections)
        for connection in connections:
            connection.cancel_all()
        for connection in connections:
            connection.close()
        for connection in connections:
            connection.reader.join(1.0)
            if connection.reader.is_alive():
                connection.abort()
                connection.reader.join(1.0)
        self._deadlines.close()
        stopped.set()

    # Calls.

    def admit(self, call: Call) -> Refusal | None:
        """Find the call's handler and count it; the status to refuse it with when it cannot run."""
        try:
            handler = self._lookup(_CallDetails(call.method, call.metadata))
        except Exception as exc:  # an interceptor failed: the call cannot run, the server goes on
            log.exception("an interceptor failed for %s", call.method)
            return grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}"
        if handler is None:
            return grpc.StatusCode.UNIMPLEMENTED, "Method not found!"
        with self._lock:
            if self._max_calls is not None and self._calls >= self._max_calls:
                return grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"
            self._calls += 1
        call.handler = handler
        if call.deadline is not None:
            self._deadlines.add(call)
        return None

    def call_ended(self, call: Call) -> None:
        if call.handler is not None and not call.started:  # ended before its handler ran: it never will
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._calls -= 1
            self._lock.notify_all()

    def run(self, call: Call) -> None:
        try:
            self._executor.submit(_serve, call, self._release)
        except RuntimeError:  # the executor was shut down
            call.finish(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            self._release()


def _serve(call: Call, release: Callable[[], None]) -> None:
    """Run a call's handler, send what it answers, and end the call with its status."""
    handler = call.handler
    assert handler is not None
    context = ServicerContext(call)
    code, details = grpc.StatusCode.OK, None
    try:
        try:
            request = _request(call, handler)
        except Exception:
            code, details = grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        else:
            code, details = _respond(call, handler, request, context)
    finally:
        if context.aborted or context.code_set is not None:
            code = context.code_set or code
            details = context.details_set if context.details_set is not None else details
        call.finish(code, details, context.trailing)
        release()


def _request(call: Call, handler: grpc.RpcMethodHandler) -> Any:
    deserialize = handler.request_deserializer
    if handler.request_streaming:
        return call.request_iterator(deserialize)
    if not call.requests:
        raise ValueError("no request message")
    return deserialize(call.requests[0]) if deserialize else call.requests[0]


def _respond(
    call: Call, handler: grpc.RpcMethodHandler, request: Any, context: ServicerContext
) -> tuple[grpc.StatusCode, str | None]:
    serialize = handler.response_serializer
    if not handler.response_streaming:
        behaviour = handler.unary_unary or handler.stream_unary
        try:
            response = behaviour(request, context)
        except Aborted:
            return grpc.StatusCode.OK, None
        except Exception as exc:
            return _failed(call, context, "Exception calling application", exc)
        if response is not None and call.active:
            call.send_message(framed(serialize(response) if serialize else response))
        return grpc.StatusCode.OK, None
    behaviour = handler.unary_stream or handler.stream_stream
    responses = behaviour(request, context)
    send = call.send_message
    try:
        if serialize is None:
            for response in responses:
                if not send(framed(response)):
                    break
        else:
            for response in responses:
                if not send(framed(serialize(response))):
                    break
    except Aborted:
        pass
    except Exception as exc:
        return _failed(call, context, "Exception iterating responses", exc)
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            close()  # a call that ended mid-stream: the handler's `finally` runs now, not at garbage collection
    return grpc.StatusCode.OK, None


def _failed(call: Call, context: ServicerContext, what: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
    if call.active and not context.aborted:
        log.exception("%s (%s)", what, call.method)
    return grpc.StatusCode.UNKNOWN, f"{what}: {exc}"


def _chained(
    interceptor: grpc.ServerInterceptor, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]
) -> Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None]:
    return lambda details: interceptor.intercept_service(continuation, details)


def _close_listener(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
    sock.close()


class _Deadlines:
    """Ends each call whose deadline passed with DEADLINE_EXCEEDED: one thread for the server, started with the
    first call that has a deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Call]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, call: Call) -> None:
        assert call.deadline is not None
        with self._wake:
            heapq.heappush(self._heap, (call.deadline, next(self._order), call))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="h2grpc-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _watch(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _, _, call = heapq.heappop(self._heap)
            if call.active:
                call.expire()
