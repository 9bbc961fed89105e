"""The flow-stream reader of common/h2grpc against real servers: grpcio's (unix socket, TCP, TLS, mutual TLS),
and plain sockets that misbehave the ways a network does (a server that vanishes, one that never answers)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from certificates import self_signed

from flowscope.common.h2grpc.client import Stream, open_stream
from flowscope.common.h2grpc.server import Server
from flowscope.common.h2grpc.stream_errors import StreamError
from flowscope.common.tls import ClientTLS, ServerTLS

DETAILS = "naïve ✓ 100% sure: «nope»"


@dataclass
class Calls:
    """What the test service saw: a stream that ended on the client's word (its callback ran)."""

    cancelled: threading.Event = field(default_factory=threading.Event)


def numbers(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """Messages of the sizes asked for, each filled with its index so order shows."""
    for index, size in enumerate(json.loads(request)["sizes"]):
        yield bytes([index % 251]) * size


def failing(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    asked = json.loads(request)
    yield from (b"x" * 10 for _ in range(asked["before"]))
    context.abort(grpc.StatusCode.PERMISSION_DENIED, DETAILS)


def forever(calls: Calls) -> Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]:
    def handler(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(calls.cancelled.set)
        yield b"first"
        while context.is_active():
            calls.cancelled.wait(0.05)

    return handler


@dataclass
class Served:
    target: str
    options: dict[str, Any]
    calls: Calls
    server: grpc.Server

    def open(self, method: str, request: Any = None, **options: Any) -> Stream:
        body = json.dumps(request or {}).encode()
        return open_stream(self.target, f"/test.Streams/{method}", body, **{**self.options, **options})


SERVERS = {"grpcio": grpc.server, "h2grpc": Server}
TRANSPORTS = ("unix", "tcp", "tls", "mutual-tls")
TLS = ("tls", "mutual-tls")


def setups(servers: Iterable[str] = SERVERS, transports: Iterable[str] = TRANSPORTS) -> list[tuple[str, str]]:
    return [(server, transport) for server in servers for transport in transports]


def served_on(servers: Iterable[str] = SERVERS, transports: Iterable[str] = TRANSPORTS) -> pytest.MarkDecorator:
    """A test on only the setups its subject exists on (a TLS refusal needs TLS): generated only for them,
    rather than generated for all and skipped where it does not apply."""
    return pytest.mark.parametrize("served", setups(servers, transports), indirect=True, ids="-".join)


@pytest.fixture(params=setups(), ids="-".join)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """The test service on grpcio's server and on common/h2grpc's, over each transport (all of them, unless
    the test says `served_on`)."""
    kind, transport = request.param
    calls = Calls()
    handlers = {
        "Numbers": grpc.unary_stream_rpc_method_handler(numbers),
        "Failing": grpc.unary_stream_rpc_method_handler(failing),
        "Forever": grpc.unary_stream_rpc_method_handler(forever(calls)),
    }
    server = SERVERS[kind](futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Streams", handlers),))
    options: dict[str, Any] = {}
    if transport == "unix":
        target = f"unix://{tmp_path}/test.sock"
        server.add_insecure_port(target)
    elif transport == "tcp":
        target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    else:
        server_cert, server_key = request.getfixturevalue("server_pair")
        client_cert, client_key = request.getfixturevalue("client_pair")
        cas = (client_cert,) if transport == "mutual-tls" else ()
        tls = ServerTLS(server_cert, server_key, cas)
        port = server.add_secure_port("127.0.0.1:0", tls if isinstance(server, Server) else tls.credentials())
        target = f"127.0.0.1:{port}"
        client = ClientTLS((server_cert,), client_cert, client_key) if cas else ClientTLS((server_cert,))
        options = {"tls": client, "server_name": "server.test"}
    server.start()
    try:
        yield Served(target, options, calls, server)
    finally:
        server.stop(None)


def test_messages_arrive_whole_and_in_order_whatever_the_frames(served: Served) -> None:
    sizes = [0, 1, 5, 400, 70_000, 3, (1 << 20) + 7, *([9] * 3000), 16_384, 16_379, 2_000_000]
    stream = served.open("Numbers", {"sizes": sizes}, max_message=4 << 20)
    got = list(stream)
    assert [len(m) for m in got] == sizes
    assert all(m == bytes([i % 251]) * len(m) for i, m in enumerate(got))
    assert stream.code() is grpc.StatusCode.OK and not stream.is_active()


def test_batches_hold_the_same_messages(served: Served) -> None:
    sizes = [400] * 5000
    batches = list(served.open("Numbers", {"sizes": sizes}).batches())
    assert sum(len(batch) for batch in batches) == len(sizes)
    assert all(batches)


def test_an_error_status_is_raised_with_its_details_after_the_messages_before_it(served: Served) -> None:
    for before in (0, 3):
        stream = served.open("Failing", {"before": before})
        got: list[bytes] = []
        with pytest.raises(grpc.RpcError) as raised:
            got.extend(stream)
        assert len(got) == before
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == DETAILS
        assert stream.code() is grpc.StatusCode.PERMISSION_DENIED and stream.details() == DETAILS


def test_an_unknown_method_is_unimplemented(served: Served) -> None:
    with pytest.raises(StreamError) as raised:
        list(served.open("Nothing"))
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_the_deadline_ends_a_stream_that_waits(served: Served) -> None:
    stream = served.open("Forever", timeout=0.5)
    got: list[bytes] = []
    with pytest.raises(StreamError) as raised:
        got.extend(stream)
    assert got == [b"first"]
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert served.calls.cancelled.wait(10)


def test_a_cancel_from_another_thread_frees_a_blocked_reader_and_the_handler(served: Served) -> None:
    stream = served.open("Forever")
    got: list[bytes] = []
    ended: list[BaseException] = []

    def read() -> None:
        try:
            got.extend(stream)
        except grpc.RpcError as exc:
            ended.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while not got and reader.is_alive():
            reader.join(0.01)
        stream.cancel()
    finally:
        reader.join(10)
    assert not reader.is_alive()
    assert got == [b"first"]
    assert isinstance(ended[0], StreamError) and ended[0].code() is grpc.StatusCode.CANCELLED
    assert served.calls.cancelled.wait(10)  # the server heard of it: its callback ran


def test_a_reader_that_stops_reading_cancels_the_call(served: Served) -> None:
    for message in served.open("Forever"):
        assert message == b"first"
        break
    assert served.calls.cancelled.wait(10)  # the server heard of it: its callback ran


def test_a_server_that_stops_ends_the_stream_unavailable(served: Served) -> None:
    """grpcio's server says GOAWAY and then pings: h2 would call every frame after a GOAWAY an error."""
    stream = served.open("Forever")
    got: list[bytes] = []
    with pytest.raises(StreamError) as raised:
        for message in stream:
            got.append(message)
            served.server.stop(None)
    assert got == [b"first"]
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


@served_on(transports=TLS)
def test_tls_with_a_certificate_it_does_not_trust_is_unavailable(served: Served, tmp_path: Path) -> None:
    stranger, _ = self_signed(tmp_path, "stranger.test")
    with pytest.raises(StreamError) as raised:
        list(served.open("Numbers", {"sizes": [1]}, tls=ClientTLS((stranger,))))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "certificate" in raised.value.details().lower()


@served_on(transports=["mutual-tls"])
def test_mutual_tls_without_a_client_certificate_is_refused(served: Served) -> None:
    tls = served.options["tls"]
    with pytest.raises(StreamError) as raised:
        list(served.open("Numbers", {"sizes": [1]}, tls=ClientTLS(tls.server_cas)))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_nothing_listening_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    for target, reason in ((f"127.0.0.1:{port}", "Connection refused"), (f"unix://{tmp_path}/no.sock", "No such")):
        with pytest.raises(StreamError) as raised:
            list(open_stream(target, "/test.Streams/Numbers", b"{}"))
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert raised.value.details().startswith("failed to connect to all addresses")
        assert reason in raised.value.details()


class RawServer:
    """A listening socket whose one connection `serve(conn)` handles on a thread: servers that misbehave."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._serve = serve
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            self._serve(conn)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def vanishing(conn: socket.socket) -> None:
    """Answers the call with headers and a message, then the connection is gone (no GOAWAY, no trailers)."""
    h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    h2conn.initiate_connection()
    conn.sendall(h2conn.data_to_send())
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for event in h2conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                h2conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                h2conn.send_data(event.stream_id, b"\x00\x00\x00\x00\x02hi")
                conn.sendall(h2conn.data_to_send())
                conn.shutdown(socket.SHUT_RDWR)
                return
        conn.sendall(h2conn.data_to_send())


def test_a_server_that_vanishes_mid_stream_ends_it_unavailable() -> None:
    server = RawServer(vanishing)
    try:
        got: list[bytes] = []
        with pytest.raises(StreamError) as raised:
            got.extend(open_stream(server.target, "/test.Streams/Forever", b"{}"))
        assert got == [b"hi"]
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        server.close()


def test_keepalive_ends_a_stream_whose_server_stopped_answering() -> None:
    gone = threading.Event()

    def silent(conn: socket.socket) -> None:  # accepts, reads nothing, answers nothing
        gone.wait(30)

    server = RawServer(silent)
    try:
        with pytest.raises(StreamError) as raised:
            list(open_stream(server.target, "/test.Streams/Forever", b"{}", keepalive_s=0.2))
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "ping" in raised.value.details()
    finally:
        gone.set()
        server.close()


def test_a_cancel_before_the_first_read_connects_nowhere(tmp_path: Path) -> None:
    stream = open_stream(f"unix://{tmp_path}/no.sock", "/test.Streams/Numbers", b"{}")
    stream.cancel()
    with pytest.raises(StreamError) as raised:
        list(stream)
    assert raised.value.code() is grpc.StatusCode.CANCELLED


@served_on(servers=["grpcio"])  # h2grpc's Server answers every ping
def test_a_grpc_server_that_finds_the_pings_too_many_says_so(served: Served) -> None:
    """grpcio's default policy answers pings on a stream that sends nothing with GOAWAY "too_many_pings": the
    stream ends UNAVAILABLE with those words, which the relay reads as "ping less often"."""
    with pytest.raises(StreamError) as raised:
        list(served.open("Forever", keepalive_s=0.1, timeout=30))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "too_many_pings" in raised.value.details()
