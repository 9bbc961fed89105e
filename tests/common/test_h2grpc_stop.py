"""common/h2grpc's Server stopping gracefully while a client is mid-stream and still talking, read frame by
frame: one GOAWAY (NO_ERROR), the client's PINGs still answered, the running stream's last messages and its
trailers, then the connection closed. (h2 took any frame after its own GOAWAY as a protocol error and sent a
second GOAWAY, PROTOCOL_ERROR, the stream cut off without trailers: 1 stop in 3-5, when a ping crossed it.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import h2.config
import h2.connection
import hpack
import pytest

from flowscope.common.h2grpc.messages import MessageSplitter
from flowscope.common.h2grpc.server import Server

WAIT_S = 30.0  # a bound for conditions on a loaded machine, never a pause
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
END_STREAM, ACK = 0x1, 0x1
FIRST = 3  # messages the handler sends before the stop


@dataclass
class Frame:
    kind: int
    flags: int
    stream_id: int
    payload: bytes


class RawClient:
    """A client that speaks HTTP/2 through h2 only to open its call, then reads and writes frames itself, so
    it sees exactly what the server sends, and can send what h2 would refuse to after a GOAWAY."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.frames: list[Frame] = []
        self._buffer = b""
        self._decoder = hpack.Decoder()
        self._messages = MessageSplitter()
        self.messages: list[bytes] = []

    def call(self, method: str, request: bytes) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]
        conn.send_headers(1, headers)
        conn.send_data(1, b"\x00" + len(request).to_bytes(4, "big") + request, end_stream=True)
        self.sock.sendall(conn.data_to_send())

    def ping(self, data: bytes) -> None:
        self.sock.sendall(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + data)

    def window_update(self, stream_id: int, increment: int) -> None:
        self.sock.sendall(b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big"))

    def until(self, done: object) -> None:
        """Read frames until `done(self)` is true; AssertionError if the connection ends first."""
        assert callable(done)
        while not done(self):
            assert self.read(), f"the connection ended; frames: {self.kinds()}"

    def read_to_end(self) -> None:
        while self.read():
            pass

    def read(self) -> bool:
        """One or more frames more; False once the server closed the connection."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self._buffer += data
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                break
            header, payload = self._buffer[:9], self._buffer[9 : 9 + length]
            self._buffer = self._buffer[9 + length :]
            frame = Frame(header[3], header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF, payload)
            self.frames.append(frame)
            if frame.kind == DATA:
                self.messages += self._messages.feed(payload)
            elif frame.kind == SETTINGS and not frame.flags & ACK:
                self.sock.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
        return True

    def headers(self, frame: Frame) -> dict[str, str]:
        decoded = self._decoder.decode(frame.payload)
        return {str(name): str(value) for name, value in decoded}

    def kinds(self) -> list[int]:
        return [frame.kind for frame in self.frames]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # a failed test does not leave the handler waiting


def serving(handler: Callable[[bytes, grpc.ServicerContext], Iterator[bytes]]) -> tuple[Server, int]:
    """common/h2grpc's Server started on a free loopback port, `handler` its /test.Stop/Stream."""
    server = Server(futures.ThreadPoolExecutor(max_workers=4))
    method = grpc.unary_stream_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Stop", {"Stream": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_a_graceful_stop_ends_with_one_goaway_and_the_running_streams_trailers(release: threading.Event) -> None:
    def handler(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for i in range(FIRST):
            yield f"before {i}".encode()
        release.wait(WAIT_S)
        yield b"after the stop"

    server, port = serving(handler)
    client = RawClient(port)
    stopped: threading.Event | None = None
    try:
        client.call("/test.Stop/Stream", b"go")
        client.until(lambda c: len(c.messages) == FIRST)

        stopped = server.stop(WAIT_S)
        client.until(lambda c: GOAWAY in c.kinds())
        # What a relay and grpcio do on a connection whose server goes away: ping it, and grow the windows
        # of a stream still running.
        for n in range(3):
            client.ping(f"ping{n:04d}".encode())
        client.window_update(0, 1 << 20)
        client.window_update(1, 1 << 20)
        client.until(lambda c: sum(f.kind == PING and f.flags & ACK for f in c.frames) == 3)
        release.set()
        client.read_to_end()

        goaways = [f for f in client.frames if f.kind == GOAWAY]
        assert len(goaways) == 1, [f.payload.hex() for f in goaways]
        assert int.from_bytes(goaways[0].payload[4:8], "big") == 0  # NO_ERROR
        assert int.from_bytes(goaways[0].payload[:4], "big") == 1  # our stream was taken: it runs to its end
        assert [f for f in client.frames if f.kind == RST_STREAM] == []
        assert client.messages == [b"before 0", b"before 1", b"before 2", b"after the stop"]
        ends = [f for f in client.frames if f.kind == HEADERS and f.flags & END_STREAM]
        assert len(ends) == 1 and ends[0].stream_id == 1
        headers = [client.headers(f) for f in client.frames if f.kind == HEADERS]
        assert headers[0][":status"] == "200"
        assert headers[-1]["grpc-status"] == "0"
        assert stopped.wait(WAIT_S)
    finally:
        release.set()
        client.close()
        (stopped or server.stop(0)).wait(WAIT_S)


def test_a_new_call_after_the_goaway_is_refused_and_the_running_one_ends_well(release: threading.Event) -> None:
    def handler(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        release.wait(WAIT_S)

    server, port = serving(handler)
    client = RawClient(port)
    stopped: threading.Event | None = None
    try:
        client.call("/test.Stop/Stream", b"go")
        client.until(lambda c: len(c.messages) == 1)
        stopped = server.stop(WAIT_S)
        client.until(lambda c: GOAWAY in c.kinds())
        # A stream opened after the GOAWAY (its HEADERS crossed it): refused, the connection and the first
        # stream unharmed. The encoder's table starts empty again, as a fresh h2 client's.
        encoder = hpack.Encoder()
        block = encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", "/test.Stop/Stream"), (":authority", "x")]
        )
        client.sock.sendall(len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x03" + block)
        client.until(lambda c: any(f.kind == RST_STREAM and f.stream_id == 3 for f in c.frames))
        client.ping(b"stillyou")
        client.until(lambda c: any(f.kind == PING and f.flags & ACK for f in c.frames))
        release.set()
        client.read_to_end()
        assert len([f for f in client.frames if f.kind == GOAWAY]) == 1
        trailers = [f for f in client.frames if f.kind == HEADERS and f.flags & END_STREAM and f.stream_id == 1]
        assert len(trailers) == 1
        assert stopped.wait(WAIT_S)
    finally:
        release.set()
        client.close()
        (stopped or server.stop(0)).wait(WAIT_S)
