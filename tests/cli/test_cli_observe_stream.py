"""observe reads GetFlows through common/h2grpc: against a server that packs many responses into each DATA frame
(common/h2grpc's Server, as the agent and the relay now answer), every flow comes out once, in order, in every
output format, and a follow that the server keeps open ends at once on SIGINT, what was printed standing."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import cli_samples as samples
import grpc
import pytest
from cli_runner import run_flowscope, start_flowscope

from flowscope.api.observer import observer_pb2
from flowscope.common.h2grpc.server import Server

COUNT = 3_000


def responses(count: int) -> list[bytes]:
    """`count` flows, each with its own port and time, so order and completeness show in any format."""
    out = []
    for seq in range(count):
        flow = samples.tcp_flow(offset=seq)
        flow.l4.TCP.source_port = 10_000 + seq
        out.append(samples.response(flow).SerializeToString())
    return out


@pytest.fixture
def stream_server(short_tmp: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A GetFlows server on a unix socket: the last `number` of the flows, then (following) nothing until the
    call is cancelled."""
    flows = responses(COUNT)

    def get_flows(request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from flows[-request.number :] if request.number else flows
        if request.follow:  # until the client cancels (or the server stops)
            ended = threading.Event()
            context.add_callback(ended.set)
            ended.wait()

    handler = grpc.unary_stream_rpc_method_handler(
        get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString, response_serializer=None
    )
    server = Server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("observer.Observer", {"GetFlows": handler}),))
    server.add_insecure_port(f"unix://{short_tmp / 'flows.sock'}")
    server.start()
    try:
        yield f"unix://{short_tmp / 'flows.sock'}", flows
    finally:
        server.stop(None).wait(10)


@pytest.mark.parametrize("output", ["compact", "json", "jsonpb", "dict"])
def test_every_flow_once_and_in_order(
    stream_server: tuple[str, list[bytes]], output: str, cli_env: dict[str, str]
) -> None:
    target, _ = stream_server
    result = run_flowscope("observe", "--server", target, "--last", str(COUNT), "-o", output, env=cli_env)
    assert result.returncode == 0, result.stderr
    printed = [int(port) for port in re.findall(r'(?:client:|"source_port":)(\d+)', result.stdout)]
    assert printed == [10_000 + seq for seq in range(COUNT)]


def test_a_follow_ends_on_sigint_with_what_it_printed(
    stream_server: tuple[str, list[bytes]], cli_env: dict[str, str]
) -> None:
    target, _ = stream_server
    process = start_flowscope("observe", "--server", target, "--last", "5", "--follow", env=cli_env)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert all(str(10_000 + COUNT - 5 + n) in line for n, line in enumerate(lines))
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
