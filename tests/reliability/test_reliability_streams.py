"""Many followers on one agent and through the relay; a client past the cap; a client that stops reading.

common/streams.py says what each gets: every follower up to the cap is served, the next one is refused with
RESOURCE_EXHAUSTED at once, and a stream whose client reads nothing for the stall timeout is ended while the
others keep up and memory stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from reliability_nodes import Node, Reader, rss_bytes
from waiting import wait_for

from flowscope.api.observer import observer_pb2
from flowscope.common.streams import FlowStreams

FOLLOWERS = 100
RSS_BOUND = 96 << 20  # what the process may keep after the streams, threads and the stuck client's buffer


@pytest.fixture
def channels() -> Iterator[list[grpc.Channel]]:
    made: list[grpc.Channel] = []
    yield made
    for channel in made:
        channel.close()


def open_channel(target: str, made: list[grpc.Channel], small_window: bool = False) -> grpc.Channel:
    """A channel; with a small window (64 KiB, no growing it) a client that stops reading is stuck sooner."""
    channel = grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)] if small_window else None)
    made.append(channel)
    return channel


def test_100_followers_on_the_agent_and_100_through_the_relay_all_get_every_flow(
    channels: list[grpc.Channel],
) -> None:
    with Node("rel-many") as node, node.relay() as relay:
        agent = open_channel(node.target, channels)
        through = open_channel(f"localhost:{relay.port}", channels)
        readers = [Reader(agent) for _ in range(FOLLOWERS)] + [Reader(through) for _ in range(FOLLOWERS)]
        try:
            wait_for(lambda: node.server.streams.open == 2 * FOLLOWERS, timeout=30)
            wait_for(lambda: relay.streams.open == FOLLOWERS, timeout=30)
            node.mark()
            wait_for(lambda: all(r.marked.is_set() for r in readers), timeout=30)
            assert [r.error for r in readers if r.error is not None] == []
        finally:
            for reader in readers:
                reader.close()


def test_a_stream_past_the_cap_is_refused_at_once_and_unary_calls_still_answer(channels: list[grpc.Channel]) -> None:
    """A real server with a cap of 3 streams (the agent's and relay's cap is the same code, at 256)."""
    streams = FlowStreams(limit=3)
    server = grpc.server(streams.executor("capped"), maximum_concurrent_rpcs=streams.max_rpcs)
    done = threading.Event()

    def follow_forever(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        def hello_then_idle() -> Iterator[bytes]:
            yield b"hello"
            while context.is_active() and not done.wait(0.1):
                pass

        return streams.serve(hello_then_idle(), context)

    handlers = {
        "Follow": grpc.unary_stream_rpc_method_handler(follow_forever),
        "Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong"),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Capped", handlers),))
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        channel = open_channel(f"localhost:{port}", channels)
        follow = channel.unary_stream("/t.Capped/Follow")
        calls = [follow(b"") for _ in range(3)]
        assert [next(call) for call in calls] == [b"hello"] * 3
        with pytest.raises(grpc.RpcError) as refused:
            next(follow(b"", timeout=10))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 3 flow streams at once" in (refused.value.details() or "")
        assert channel.unary_unary("/t.Capped/Ping")(b"", timeout=10) == b"pong"
        for call in calls:
            call.cancel()
    finally:
        done.set()
        streams.close()
        server.stop(0).wait(5)


@pytest.mark.parametrize("via", ["agent", "relay"])
def test_a_client_that_stops_reading_is_ended_after_the_stall_timeout_while_the_others_keep_up(
    via: str, channels: list[grpc.Channel]
) -> None:
    with (
        Node(f"rel-stuck-{via}", capacity=8191, stall_s=2.0) as node,
        node.relay(stall_s=2.0, client_buffer=256) as relay,
    ):
        target = node.target if via == "agent" else f"localhost:{relay.port}"
        server_streams = node.server.streams if via == "agent" else relay.streams
        channel = open_channel(target, channels)
        before = rss_bytes()
        stuck = Reader(open_channel(target, channels, small_window=True), stuck=True)
        readers = [Reader(channel) for _ in range(5)]
        try:
            wait_for(lambda: server_streams.open == 6, timeout=15)
            # Enough flows to fill the stuck client's window many times over, until the server gives up on it.
            node.feed_until(lambda: server_streams.ended_stalled == 1, per_second=500)
            node.mark()
            wait_for(lambda: all(r.marked.is_set() for r in readers), timeout=15)
            assert [r.error for r in readers if r.error is not None] == []
            stuck.thread.start()  # it reads now: what it had been sent, then the end
            wait_for(stuck.ended.is_set, timeout=15)
            assert stuck.error is not None and stuck.error.code() == grpc.StatusCode.CANCELLED
            assert not stuck.marked.is_set()
            assert rss_bytes() - before < RSS_BOUND
        finally:
            for reader in [stuck, *readers]:
                reader.close()


def test_a_client_that_pauses_is_told_what_the_ring_overwrote_meanwhile(channels: list[grpc.Channel]) -> None:
    with Node("rel-pause", capacity=1023) as node:
        paused = Reader(open_channel(node.target, channels), stuck=True)
        try:
            wait_for(lambda: node.server.streams.open == 1, timeout=15)
            first = node.ring.written
            node.feed_until(lambda: node.ring.written - first > 50_000, per_second=20_000)
            paused.thread.start()
            node.mark()
            wait_for(paused.marked.is_set, timeout=15)
            assert paused.lost > 0 and paused.error is None
        finally:
            paused.close()


def test_the_flow_stream_limit_and_stall_timeout_are_checked() -> None:
    with pytest.raises(ValueError):
        FlowStreams(limit=0)
    with pytest.raises(ValueError):
        FlowStreams(stall_s=0)
    assert observer_pb2.GetFlowsRequest  # the wire types load
