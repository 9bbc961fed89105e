"""The synthetic agents of bench/relay_bench.py: the relay's own ceiling, measured without real agents' cost.

Agent processes speak the real GetFlows API from pre-encoded GetFlowsResponse bytes (a generic handler without a
response serializer sends them as they are), so what is measured is the relay, not the agents: each stores
`--last` history ready to send and, in follow mode, sends flows stamped with the time they leave at a set rate
(or as fast as the relay takes them). This file is also the agents' process (`--synthetic-agent`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from relay_runner import with_parent

from flowscope.api.observer import observer_pb2
from flowscope.common.h2grpc.server import Server
from flowscope.common.protowire import varint

SYNTHETIC_NODES = ("node1", "node2", "node3")
HISTORY_STEP_NS = 3_000  # the stored flows of one node are this far apart; the nodes' interleave


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def time_field(ns: int) -> bytes:
    """GetFlowsResponse.time (1001): what a real agent puts last on every response."""
    return _field(1001, b"\x08" + varint(ns // 1_000_000_000) + b"\x10" + varint(ns % 1_000_000_000))


def sample_flows(node: str) -> list[bytes]:
    """Fields 1 (flow) and 1000 (node_name) of 16 flows shaped like a lab's, encoded once."""
    from flowscope.api.flow import flow_pb2

    flows = []
    for port in range(9000, 9016):
        f = flow_pb2.Flow(node_name=node, verdict=flow_pb2.FORWARDED, Summary=f"TCP Flags: ACK {port}")
        f.IP.source, f.IP.destination, f.IP.ipVersion = "10.200.1.11", "10.200.2.11", flow_pb2.IPv4
        f.l4.TCP.source_port, f.l4.TCP.destination_port = 40000 + port, port
        f.l4.TCP.flags.ACK = True
        f.ethernet.source, f.ethernet.destination = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"
        for endpoint, pod in ((f.source, "client"), (f.destination, "server")):
            endpoint.ID, endpoint.identity, endpoint.namespace, endpoint.pod_name = 1234, 5678, "default", pod
            endpoint.cluster_name = "lab"
            endpoint.labels.extend([f"k8s:app={pod}", "k8s:io.kubernetes.pod.namespace=default"])
        f.event_type.type = 4
        f.trace_observation_point = flow_pb2.TO_ENDPOINT
        f.traffic_direction = flow_pb2.INGRESS
        f.is_reply.value = False
        f.interface.index, f.interface.name = 7, "lxc-server"
        flows.append(_field(1, f.SerializeToString()) + _field(1000, node.encode()))
    return flows


def synthetic_agent(socket_path: Path, node: str, index: int, history: int, rate: float, newest: int) -> Server:
    """A server of GetFlows as `node` on socket_path: `history` stored flows up to `newest` (the same for every
    node: their histories interleave), then (follow) flows stamped now, `rate` per second (0: as fast as the
    client takes them)."""
    flows = sample_flows(node)
    stored = [
        flows[k % len(flows)] + time_field(newest - (history - k) * HISTORY_STEP_NS + index * 1_000)
        for k in range(history)
    ]

    def live(context: grpc.ServicerContext) -> Iterator[bytes]:
        start, sent = time.monotonic(), 0
        while context.is_active():
            due = int((time.monotonic() - start) * rate) - sent if rate else 256
            if due <= 0:
                time.sleep(max(0.0, min(0.05, start + (sent + 1) / rate - time.monotonic())))
                continue
            for _ in range(min(due, 256)):
                yield flows[sent % len(flows)] + time_field(time.time_ns())
                sent += 1

    def get_flows(request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        if request.number:
            yield from stored[-request.number :]
        if request.follow:
            yield from live(context)

    handler = grpc.unary_stream_rpc_method_handler(
        get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString
    )
    # The agents' own server (common/h2grpc): grpcio's would cost each agent ~40 µs of CPU a flow, on the CPUs
    # the relay runs on. It answers the relay's pings, every second, as the agents do.
    server = Server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("observer.Observer", {"GetFlows": handler}),))
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    return server


def serve_synthetic(spec: str, history: int, rate: float, newest: int) -> None:
    """The child of synthetic_agents: the agents of `spec` (JSON [[socket path, node, index], ...]) in this
    process, until SIGTERM."""
    import json

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    servers = [synthetic_agent(Path(p), node, i, history, rate, newest) for p, node, i in json.loads(spec)]
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for server in servers:
        server.stop(None)


@contextmanager
def synthetic_agents(
    folder: Path, history: int, rate: float, nodes: Sequence[str] = SYNTHETIC_NODES, per_process: int = 1
) -> Iterator[list[str]]:
    """Synthetic agents, `per_process` in each process; yields their `name=unix://socket` peers once they serve."""
    import json

    procs, peers, newest = [], [], str(time.time_ns() - 1_000_000_000)
    agents = [(str(folder / f"{name}.sock"), name, index) for index, name in enumerate(nodes)]
    for at in range(0, len(agents), per_process):
        spec = json.dumps(agents[at : at + per_process])
        argv = [sys.executable, __file__, "--synthetic-agent", spec, str(history), str(rate), newest]
        procs.append(subprocess.Popen(argv, preexec_fn=with_parent))
    peers = [f"{name}=unix://{path}" for path, name, _ in agents]
    try:
        for peer in peers:
            with grpc.insecure_channel(peer.split("=", 1)[1]) as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
        yield peers
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    _, _, spec, history, rate, newest = sys.argv[:6]
    serve_synthetic(spec, int(history), float(rate), int(newest))
