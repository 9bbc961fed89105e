"""common/h2grpc's Server against real grpcio clients: every kind of method, statuses, deadlines, cancellation,
limits, slow readers, stop, garbage and TLS, on unix sockets and TCP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from certificates import Pair

from flowscope.common.h2grpc.server import Server
from flowscope.common.statuses import BriefStatuses
from flowscope.common.streams import FlowStreams
from flowscope.common.tls import ServerTLS

WAIT_S = 30.0  # a bound for conditions on a loaded machine, never a pause
NON_ASCII = "filtre refusé: «pod» ✓ 100% sûr"


class Calls:
    """The methods a test server offers, and what its handlers saw."""

    def __init__(self, streams: FlowStreams | None = None) -> None:
        self.streams = streams
        self.release = threading.Event()  # lets a blocking handler go on
        self.ended = threading.Event()  # a handler's `finally` ran
        self.callback_ran = threading.Event()
        self.started = threading.Event()
        self.seen: dict[str, Any] = {}

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        command = request[:16].rstrip(b" ")
        if command == b"abort":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, NON_ASCII)
        if command == b"set-code":
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details("no such node")
            return b""
        if command == b"raise":
            raise ValueError("boom")
        if command == b"peer":
            return repr((context.peer(), context.peer_identities(), context.auth_context())).encode()
        if command == b"metadata":
            self.seen["metadata"] = dict(context.invocation_metadata())
            context.set_trailing_metadata((("answer", "42"),))
            return b"ok"
        return str(len(request)).encode()

    def counted(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """`count` messages of `size` bytes each, every one saying its index first."""
        count, size = (int(x) for x in request.split(b","))
        for i in range(count):
            head = f"{i:08d}".encode()
            yield head + b"." * max(0, size - len(head))
        if size == 0:
            raise RuntimeError("no size")

    def endless(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Messages as fast as the client takes them, until the call ends; says when it did."""
        context.add_callback(self.callback_ran.set)
        self.seen["time_remaining"] = context.time_remaining()

        def messages() -> Iterator[bytes]:
            payload = b"x" * int(request or b"400")
            try:
                while True:
                    yield payload
            finally:
                self.ended.set()

        if self.streams is not None:
            yield from self.streams.serve(messages(), context)
        else:
            yield from messages()

    def idle(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """One message, then nothing until the call ends or the test releases it."""
        context.add_callback(self.callback_ran.set)
        self.seen["time_remaining"] = context.time_remaining()
        try:
            yield b"first"
            self.started.set()
            while context.is_active() and not self.release.wait(0.05):
                pass
        finally:
            self.ended.set()

    def total(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return str(sum(len(r) for r in requests)).encode()

    def echo(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield request.upper()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "test.Calls",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "Counted": grpc.unary_stream_rpc_method_handler(self.counted),
                "Endless": grpc.unary_stream_rpc_method_handler(self.endless),
                "Idle": grpc.unary_stream_rpc_method_handler(self.idle),
                "Total": grpc.stream_unary_rpc_method_handler(self.total),
                "Echo": grpc.stream_stream_rpc_method_handler(self.echo),
            },
        )


def start(calls: Calls, address: str, limit: int | None = None, **kwargs: Any) -> tuple[Server, int]:
    server = Server(futures.ThreadPoolExecutor(max_workers=32), maximum_concurrent_rpcs=limit, **kwargs)
    server.add_generic_rpc_handlers((calls.handler(),))
    port = server.add_insecure_port(address)
    server.start()
    return server, port


@pytest.fixture(params=["unix", "tcp"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Calls, str]]:
    """A server of Calls on a unix socket or the loopback; yields (calls, the target to dial)."""
    calls = Calls()
    if request.param == "unix":
        path = tmp_path / "calls.sock"
        server, _ = start(calls, f"unix://{path}")
        target = f"unix://{path}"
    else:
        server, port = start(calls, "127.0.0.1:0")
        target = f"127.0.0.1:{port}"
    yield calls, target
    server.stop(None).wait(WAIT_S)


def error_of(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_unary_calls_answer_and_end_with_the_status_the_handler_left(served: tuple[Calls, str]) -> None:
    _, target = served
    with grpc.insecure_channel(target) as channel:
        unary = channel.unary_unary("/test.Calls/Unary")
        assert unary(b"12345", timeout=WAIT_S) == b"5"
        aborted = error_of(lambda: unary(b"abort", timeout=WAIT_S))
        assert (aborted.code(), aborted.details()) == (grpc.StatusCode.INVALID_ARGUMENT, NON_ASCII)
        not_found = error_of(lambda: unary(b"set-code", timeout=WAIT_S))
        assert (not_found.code(), not_found.details()) == (grpc.StatusCode.NOT_FOUND, "no such node")
        raised = error_of(lambda: unary(b"raise", timeout=WAIT_S))
        assert raised.code() == grpc.StatusCode.UNKNOWN
        assert raised.details() == "Exception calling application: boom"
        unknown = error_of(lambda: channel.unary_unary("/test.Calls/Nothing")(b"", timeout=WAIT_S))
        assert (unknown.code(), unknown.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


def test_metadata_comes_in_and_trailing_metadata_goes_out(served: tuple[Calls, str]) -> None:
    calls, target = served
    with grpc.insecure_channel(target) as channel:
        answer, call = channel.unary_unary("/test.Calls/Unary").with_call(
            b"metadata", metadata=(("who", "tester"), ("blob-bin", b"\x00\xff")), timeout=WAIT_S
        )
    assert answer == b"ok"
    assert calls.seen["metadata"]["who"] == "tester"
    assert calls.seen["metadata"]["blob-bin"] == b"\x00\xff"
    assert ("answer", "42") in call.trailing_metadata()


def test_a_stream_arrives_whole_and_in_order_for_tiny_and_large_messages(served: tuple[Calls, str]) -> None:
    _, target = served
    with grpc.insecure_channel(target) as channel:
        counted = channel.unary_stream("/test.Calls/Counted")
        for count, size in ((20000, 8), (3000, 400), (40, 300_000), (1, 4_000_000)):
            received = list(counted(f"{count},{size}".encode(), timeout=WAIT_S * 2))
            assert len(received) == count
            assert all(len(m) == size and int(m[:8]) == i for i, m in enumerate(received))
        failing = counted(b"3,0", timeout=WAIT_S)
        error = error_of(lambda: list(failing))
        assert error.code() == grpc.StatusCode.UNKNOWN
        assert error.details() == "Exception iterating responses: no size"


def test_client_streaming_and_bidirectional_calls(served: tuple[Calls, str]) -> None:
    _, target = served
    with grpc.insecure_channel(target) as channel:
        total = channel.stream_unary("/test.Calls/Total")
        assert total(iter([b"ab", b"cde", b""] * 100), timeout=WAIT_S) == b"500"
        echo = channel.stream_stream("/test.Calls/Echo")
        assert list(echo(iter([b"one", b"two", b"three"]), timeout=WAIT_S)) == [b"ONE", b"TWO", b"THREE"]


def test_a_request_past_the_message_limit_is_refused_and_one_below_is_taken(served: tuple[Calls, str]) -> None:
    _, target = served
    options = [("grpc.max_send_message_length", 16 * 1024 * 1024)]
    with grpc.insecure_channel(target, options=options) as channel:
        unary = channel.unary_unary("/test.Calls/Unary")
        assert unary(b"n" * 3_000_000, timeout=WAIT_S) == b"3000000"
        error = error_of(lambda: unary(b"n" * 5_000_000, timeout=WAIT_S))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert unary(b"after", timeout=WAIT_S) == b"5"  # the connection and server are fine


def test_the_deadline_ends_the_call_and_the_handler_knows_its_time(served: tuple[Calls, str]) -> None:
    calls, target = served
    with grpc.insecure_channel(target) as channel:
        stream = channel.unary_stream("/test.Calls/Idle")(b"", timeout=1.0)
        assert next(stream) == b"first"
        error = error_of(lambda: next(stream))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls.ended.wait(WAIT_S) and calls.callback_ran.wait(WAIT_S)
    # The handler's time is the header's: grpcio's client encodes what it has left rounded up (ten-millisecond
    # steps from one second, "encoding may round up arbitrarily" in grpc core), from a clock it read a moment
    # earlier, so the header may carry a little over the 1 s asked for; no header would leave None here.
    assert 0 < calls.seen["time_remaining"] <= 1.1


def test_a_client_that_cancels_mid_stream_stops_the_handler_and_runs_its_callbacks(served: tuple[Calls, str]) -> None:
    calls, target = served
    with grpc.insecure_channel(target) as channel:
        stream = channel.unary_stream("/test.Calls/Endless")(b"400", timeout=WAIT_S)
        for _ in range(1000):
            next(stream)
        stream.cancel()
        assert calls.ended.wait(WAIT_S) and calls.callback_ran.wait(WAIT_S)
        assert calls.seen["time_remaining"] is not None
        # the connection goes on serving
        assert channel.unary_unary("/test.Calls/Unary")(b"xy", timeout=WAIT_S) == b"2"


def test_calls_past_the_limit_are_refused_with_resource_exhausted(tmp_path: Path) -> None:
    calls = Calls()
    server, _ = start(calls, f"unix://{tmp_path}/s.sock", limit=1)
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/s.sock") as channel:
            first = channel.unary_stream("/test.Calls/Idle")(b"", timeout=WAIT_S)
            assert next(first) == b"first"
            error = error_of(lambda: channel.unary_unary("/test.Calls/Unary")(b"", timeout=WAIT_S))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            calls.release.set()
            assert list(first) == []
            assert calls.ended.wait(WAIT_S)
            assert wait_until(lambda: _answers(channel))  # the slot is free again once the handler ended
    finally:
        server.stop(None).wait(WAIT_S)


def _answers(channel: grpc.Channel) -> bool:
    try:
        return bool(channel.unary_unary("/test.Calls/Unary")(b"z", timeout=WAIT_S) == b"1")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False


def wait_until(condition: Callable[[], bool]) -> bool:
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.05)):
        if condition():
            return True
        done.wait(0.05)
    return False


def test_a_client_that_stops_reading_holds_the_handler_in_its_send_until_the_stall_cancels_it(
    tmp_path: Path,
) -> None:
    streams = FlowStreams(stall_s=0.5)
    calls = Calls(streams)
    server, _ = start(calls, f"unix://{tmp_path}/s.sock")
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/s.sock") as channel:
            stream = channel.unary_stream("/test.Calls/Endless")(b"100000", timeout=WAIT_S)
            next(stream)  # then read nothing: windows and the call's buffer fill, the handler's send waits
            assert calls.ended.wait(WAIT_S) and calls.callback_ran.wait(WAIT_S)
            assert streams.ended_stalled == 1
            error = error_of(lambda: list(stream))
            assert error.code() == grpc.StatusCode.CANCELLED
    finally:
        streams.close()
        server.stop(None).wait(WAIT_S)


def test_many_streams_at_once_each_arrive_whole(served: tuple[Calls, str]) -> None:
    _, target = served
    with grpc.insecure_channel(target) as channel:
        counted = channel.unary_stream("/test.Calls/Counted")

        def read(size: int) -> bool:
            received = list(counted(f"2000,{size}".encode(), timeout=WAIT_S * 2))
            return len(received) == 2000 and all(int(m[:8]) == i for i, m in enumerate(received))

        with futures.ThreadPoolExecutor(24) as pool:
            assert all(pool.map(read, [8 + 97 * i for i in range(24)]))


def test_hundreds_of_streams_open_at_once_on_one_connection(tmp_path: Path) -> None:
    calls = Calls()
    server = Server(futures.ThreadPoolExecutor(max_workers=320))
    server.add_generic_rpc_handlers((calls.handler(),))
    server.add_insecure_port(f"unix://{tmp_path}/s.sock")
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/s.sock") as channel:
            idle = channel.unary_stream("/test.Calls/Idle")
            streams = [idle(b"", timeout=WAIT_S * 2) for _ in range(300)]
            assert all(next(stream) == b"first" for stream in streams)
            calls.release.set()
            assert all(list(stream) == [] for stream in streams)
    finally:
        server.stop(None).wait(WAIT_S)


def test_stop_lets_calls_end_within_grace_then_cancels_them(tmp_path: Path) -> None:
    calls = Calls()
    server, _ = start(calls, f"unix://{tmp_path}/s.sock")
    with grpc.insecure_channel(f"unix://{tmp_path}/s.sock") as channel:
        stream = channel.unary_stream("/test.Calls/Idle")(b"", timeout=WAIT_S)
        assert next(stream) == b"first"
        assert calls.started.wait(WAIT_S)
        stopped = server.stop(0.2)
        assert stopped.wait(WAIT_S)
        assert calls.ended.wait(WAIT_S) and calls.callback_ran.wait(WAIT_S)
        error = error_of(lambda: list(stream))
        assert error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(f"{tmp_path}/s.sock")  # nobody listens any more (the file is the caller's to remove)


def test_garbage_bytes_close_that_connection_and_nothing_else(served: tuple[Calls, str]) -> None:
    _, target = served
    family, where = (
        (socket.AF_UNIX, target.removeprefix("unix://"))
        if target.startswith("unix")
        else (socket.AF_INET, ("127.0.0.1", int(target.rsplit(":", 1)[1])))
    )
    with socket.socket(family) as raw:
        raw.settimeout(WAIT_S)
        raw.connect(where)
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8)
        while raw.recv(65536):  # the server's SETTINGS and GOAWAY, then the close
            pass
    with grpc.insecure_channel(target) as channel:
        assert channel.unary_unary("/test.Calls/Unary")(b"abc", timeout=WAIT_S) == b"3"


def test_interceptors_see_every_call_and_can_change_its_handler(tmp_path: Path) -> None:
    class Recording(grpc.ServerInterceptor):
        def __init__(self) -> None:
            self.methods: list[str] = []

        def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
            self.methods.append(details.method)
            return continuation(details)

    class LongAbort(Calls):
        def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "x" * 5000)
            return b""

    recording = Recording()
    server, _ = start(LongAbort(), f"unix://{tmp_path}/s.sock", interceptors=[recording, BriefStatuses()])
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/s.sock") as channel:
            error = error_of(lambda: channel.unary_unary("/test.Calls/Unary")(b"", timeout=WAIT_S))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "characters left out" in (error.details() or "")  # BriefStatuses' context was the handler's
        assert recording.methods == ["/test.Calls/Unary"]
    finally:
        server.stop(None).wait(WAIT_S)


def test_a_second_server_on_a_port_in_use_fails_to_bind(tmp_path: Path) -> None:
    server, port = start(Calls(), "127.0.0.1:0")
    try:
        with pytest.raises(RuntimeError, match="Failed to bind"):
            Server(futures.ThreadPoolExecutor(1)).add_insecure_port(f"127.0.0.1:{port}")
    finally:
        server.stop(None).wait(WAIT_S)


def test_peers_are_named_as_grpc_names_them(served: tuple[Calls, str]) -> None:
    _, target = served
    with grpc.insecure_channel(target) as channel:
        answer = channel.unary_unary("/test.Calls/Unary")(b"peer", timeout=WAIT_S).decode()
    peer = answer.split("'")[1]
    assert peer.startswith("unix:") if target.startswith("unix") else peer.startswith("ipv4:127.0.0.1:")


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_and_mutual_tls(server_pair: Pair, client_pair: Pair, mutual: bool) -> None:
    (server_cert, server_key), (client_cert, client_key) = server_pair, client_pair
    tls = ServerTLS(server_cert, server_key, (client_cert,) if mutual else ())
    server = Server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((Calls().handler(),))
    port = server.add_secure_port("127.0.0.1:0", tls)
    server.start()
    options = [("grpc.ssl_target_name_override", "server.test")]
    roots = server_cert.read_bytes()
    try:
        with_cert = grpc.ssl_channel_credentials(roots, client_key.read_bytes(), client_cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", with_cert, options) as channel:
            unary = channel.unary_unary("/test.Calls/Unary")
            assert unary(b"1234", timeout=WAIT_S) == b"4"
            answer = unary(b"peer", timeout=WAIT_S).decode()
            assert ("b'client.test'" in answer) == mutual
            counted = channel.unary_stream("/test.Calls/Counted")(b"5000,400", timeout=WAIT_S)
            assert sum(1 for _ in counted) == 5000
        without_cert = grpc.ssl_channel_credentials(roots)
        with grpc.secure_channel(f"127.0.0.1:{port}", without_cert, options) as channel:
            call = channel.unary_unary("/test.Calls/Unary")
            if mutual:
                assert error_of(lambda: call(b"x", timeout=WAIT_S)).code() == grpc.StatusCode.UNAVAILABLE
            else:
                assert call(b"x", timeout=WAIT_S) == b"1"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:  # no TLS at all: refused, server fine
            assert error_of(lambda: plain.unary_unary("/test.Calls/Unary")(b"", timeout=5)).code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
    finally:
        server.stop(None).wait(WAIT_S)
