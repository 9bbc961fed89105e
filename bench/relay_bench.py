"""What the relay costs, measured in one run on a three-node lab with real agents.

    .venv/bin/python bench/relay_bench.py [--seconds 10] [--rate 25] [--stress-rate 200] [--write]

- Added latency of the merged follow stream: for every flow, the client's receipt time minus the packet's
  timestamp, p50 and p99, through the lab's relay; and, for reference, straight from one agent (what the agent's
  own pipeline adds, the relay's share being the difference). Traffic: UDP exchanges from the client pod to
  pods on the two other nodes, --rate per second to each (each exchange is 6-8 flows on three nodes), for
  --seconds; then again at --stress-rate.
- `--last 20000` over three nodes: once every agent's ring holds 20,000 flows or more, the time until the last
  of the 60,000 merged flows arrives (gRPC client, median of three), the same straight from the three agents in
  parallel (no merge), and `flowscope observe --last 20000 -o jsonpb > /dev/null` through the relay.
- Relay throughput in flows per second: merged flows of `--last 20000` per second; and in follow mode, what the
  relay passes on from three synthetic agents that send pre-built flows as fast as they can (the relay's own
  ceiling, with its CPU time per flow).
With --write the figures replace the "Relay" section of bench/RESULTS.md.

Set FLOWSCOPE_RELAY_TEST_AGENT to run another agent build (see tests/relay/relay_lab.py).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from common import cpu_seconds, update_results
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.common.h2grpc.client import open_stream
from flowscope.common.h2grpc.server import Server
from flowscope.common.protowire import varint
from flowscope.lab import Lab

PROJECT = Path(__file__).resolve().parents[1]
AGENT = shlex.split(os.environ.get("FLOWSCOPE_RELAY_TEST_AGENT", "")) or [
    sys.executable,
    str(PROJECT / "tests" / "relay" / "agent_with_peers.py"),
]
LAST = 20_000

# Sends UDP datagrams from the client pod to the server pod's echo port and to the DNS pod, at a rate, each
# from a new socket: a new flow every time, which every datapath reports (one that aggregates a connection's
# packets too). Sockets stay open a while so the replies find them.
GENERATOR = """
import collections, socket, sys, time
targets = [(t.split(':')[0], int(t.split(':')[1])) for t in sys.argv[1].split(',')]
rate, seconds = float(sys.argv[2]), float(sys.argv[3])
recent = collections.deque()
start, sent = time.monotonic(), 0
while time.monotonic() - start < seconds:
    delay = start + sent / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    for target in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b'relay-bench', target)
        recent.append(s)
    while len(recent) > 256:
        recent.popleft().close()
    sent += 1
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def traffic(lab: Lab, rate: float, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """UDP from the client pod to the server (another node) and the DNS pod (a third node) while inside."""
    targets = f"{lab.pod('server').ipv4}:9001,{lab.pod('coredns').ipv4}:53"
    argv = ["ip", "netns", "exec", lab.netns("client"), sys.executable, "-c", GENERATOR, targets, str(rate)]
    proc = subprocess.Popen([*argv, str(seconds)])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def follow_latencies(target: str, stop: threading.Event, out: dict[str, list[int]], key: str) -> None:
    """Follow a server; for each flow, receipt time minus packet time (ns); counts flows out of order."""
    latencies: list[int] = []
    out[key] = latencies
    out[f"{key}-disorder"] = disorder = []
    with grpc.insecure_channel(target) as channel:
        call = observer_pb2_grpc.ObserverStub(channel).GetFlows(observer_pb2.GetFlowsRequest(follow=True))
        threading.Thread(target=lambda: (stop.wait(), call.cancel()), daemon=True).start()
        newest = 0
        try:
            for response in call:
                now = time.time_ns()
                if response.HasField("flow"):
                    t = response.flow.time.ToNanoseconds()
                    latencies.append(now - t)
                    if t < newest:
                        disorder.append(newest - t)
                    newest = max(newest, t)
        except grpc.RpcError:
            pass


def measure_latency(lab: Lab, seconds: float, rate: float) -> dict[str, float]:
    stop = threading.Event()
    out: dict[str, list[int]] = {}
    readers = [
        threading.Thread(target=follow_latencies, args=(lab.relay_address, stop, out, "relay")),
        threading.Thread(target=follow_latencies, args=(f"unix://{lab.agent_socket('node2')}", stop, out, "agent")),
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.0)
    with traffic(lab, rate, seconds) as generator:
        generator.wait(timeout=seconds + 30)
    time.sleep(0.5)
    stop.set()
    for reader in readers:
        reader.join(10)
    relay, agent = [x / 1e6 for x in out["relay"]], [x / 1e6 for x in out["agent"]]
    return {
        "flows": len(relay),
        "relay_p50": percentile(relay, 0.5),
        "relay_p99": percentile(relay, 0.99),
        "relay_max": max(relay),
        "agent_p50": percentile(agent, 0.5),
        "agent_p99": percentile(agent, 0.99),
        "out_of_order": len(out["relay-disorder"]),
        "out_of_order_max": max(out["relay-disorder"], default=0) / 1e6,
        "agent_out_of_order": len(out["agent-disorder"]),
        "rate": len(relay) / seconds,
        "load": os.getloadavg()[0],
    }


def fill(lab: Lab, per_node: int, timeout: float = 120.0) -> list[int]:
    """Traffic until every agent's ring holds per_node flows; the rings' counts."""
    deadline = time.monotonic() + timeout
    observer = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(lab.relay_address))
    while True:
        nodes = observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=10).nodes
        counts = [n.num_flows for n in nodes]
        if len(counts) == 3 and min(counts) >= per_node:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"rings did not fill: {counts}")
        with traffic(lab, 4000, 3) as generator:
            generator.wait(timeout=30)


def timed_last(target: str, number: int) -> tuple[float, int]:
    """Seconds until the last response of GetFlows(number) arrives, and how many flows came."""
    with grpc.insecure_channel(target) as channel:
        get_flows = channel.unary_stream(
            "/observer.Observer/GetFlows", request_serializer=observer_pb2.GetFlowsRequest.SerializeToString
        )
        start = time.monotonic()
        count = sum(1 for _ in get_flows(observer_pb2.GetFlowsRequest(number=number), timeout=120))
        return time.monotonic() - start, count


def measure_last(lab: Lab) -> dict[str, float]:
    relay_runs = [timed_last(lab.relay_address, LAST) for _ in range(3)]
    sockets = [f"unix://{lab.agent_socket(n.name)}" for n in lab.nodes]
    direct_runs = []
    for _ in range(3):
        start = time.monotonic()
        with futures.ThreadPoolExecutor(3) as pool:
            counts = list(pool.map(lambda s: timed_last(s, LAST)[1], sockets))
        direct_runs.append((time.monotonic() - start, sum(counts)))
    cli = [sys.executable, "-m", "flowscope.cli.main", "observe", "--server", lab.relay_address, "--last", str(LAST)]
    start = time.monotonic()
    subprocess.run([*cli, "-o", "jsonpb"], stdout=subprocess.DEVNULL, check=True, cwd=PROJECT, timeout=300)
    cli_seconds = time.monotonic() - start
    relay_s = statistics.median(t for t, _ in relay_runs)
    return {
        "relay_s": relay_s,
        "responses": relay_runs[0][1],
        "direct_s": statistics.median(t for t, _ in direct_runs),
        "direct_flows": direct_runs[0][1],
        "cli_s": cli_seconds,
        "flows_per_s": (relay_runs[0][1] - 3) / relay_s,  # less the start-of-stream node status event(s)
        "load": os.getloadavg()[0],
    }


# --- synthetic agents: the relay's own ceiling -------------------------------------------------------------
#
# Three agent processes speak the real GetFlows API from pre-encoded GetFlowsResponse bytes (a generic handler
# without a response serializer sends them as they are), so what is measured is the relay, not the agents: each
# stores `--last` history ready to send and, in follow mode, sends flows stamped with the time they leave at a
# set rate (or as fast as the relay takes them). The relay runs in a process of its own, from this checkout
# or from another checkout's relay/ folder (`--before`), side by side in one run.

SYNTHETIC_NODES = ("node1", "node2", "node3")
RATES = (10, 100, 1_000, 10_000, 50_000)  # flows per second, all nodes together
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


# The relay, from the relay/ folder given (empty: this checkout's), with every thread profiled when asked.
RELAY_RUNNER = """
import cProfile, pstats, signal, sys, threading, time
code, address, profile_out, *peers = sys.argv[1:]
import flowscope.relay
if code:
    flowscope.relay.__path__[:] = [code]
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayConfig, RelayServer
profiles = []
if profile_out:  # every thread, in CPU time (a thread waiting costs nothing)
    bootstrap = threading.Thread._bootstrap_inner
    def profiled(self):
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            bootstrap(self)
        finally:
            profile.disable()
    threading.Thread._bootstrap_inner = profiled
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
config = RelayConfig(listen_address=address, peers=[Peer(*p.split("=", 1)) for p in peers], name="relay")
server = RelayServer(config).start()
signal.sigwait({signal.SIGTERM})
if profile_out:
    for profile in profiles:
        profile.disable()
    pstats.Stats(*profiles).dump_stats(profile_out)
server.stop(0.2)
"""


def _with_parent() -> None:
    """In a child: receive SIGTERM when the benchmark dies, even by kill -9 (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


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
        procs.append(subprocess.Popen(argv, preexec_fn=_with_parent))
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


@contextmanager
def relay_process(peers: list[str], code: str = "", profile: str = "") -> Iterator[tuple[str, int]]:
    """A relay in front of `peers` (code: another relay/ folder); yields its address and pid once it serves."""
    from flowscope.lab.relay import free_address

    address = free_address()
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY_RUNNER, code, address, profile, *peers], cwd=PROJECT, preexec_fn=_with_parent
    )
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield address, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def read_flows(address: str, request: observer_pb2.GetFlowsRequest) -> Generator[bytes, None, None]:
    """The relay's responses, read by common/h2grpc's reader: a grpcio client's ~40 µs of CPU a message would
    make the client the ceiling of the figures, and take the CPUs the relay runs on."""
    stream = open_stream(address, "/observer.Observer/GetFlows", request.SerializeToString())
    try:
        for batch in stream.batches():
            yield from batch
    finally:
        stream.cancel()


def synthetic_last(address: str, pid: int) -> dict[str, float]:
    """`--last 20000` of the three synthetic nodes through the relay: seconds to the last flow, relay CPU."""
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    flows = sum(1 for raw in read_flows(address, observer_pb2.GetFlowsRequest(number=LAST)) if raw[:1] == b"\x0a")
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu0
    return {"seconds": seconds, "flows": flows, "flows_per_s": flows / seconds, "cpu_us_per_flow": cpu / flows * 1e6}


def synthetic_follow(address: str, pid: int, seconds: float) -> dict[str, float]:
    """Follow for `seconds` after a warm-up: flows merged per second (read + lost) and relay CPU per flow; for
    each flow read, receipt time minus its time (the agent stamped it as it sent it)."""
    latencies: list[int] = []
    count, lost, started, cpu0 = 0, 0, 0.0, 0.0
    responses = read_flows(address, observer_pb2.GetFlowsRequest(follow=True))
    warm_up = time.monotonic() + 1.0
    for raw in responses:
        now = time.time_ns()
        if not started and time.monotonic() >= warm_up:
            count, lost, latencies, started, cpu0 = 0, 0, [], time.monotonic(), cpu_seconds(pid)
        kind = raw[:1]
        if kind == b"\x0a":
            count += 1
            response = observer_pb2.GetFlowsResponse.FromString(raw)
            latencies.append(now - (response.time.seconds * 1_000_000_000 + response.time.nanos))
        elif kind == b"\x1a":  # a LostEvent: flows the relay dropped because this client was slow
            lost += observer_pb2.GetFlowsResponse.FromString(raw).lost_events.num_events_lost
        if started and time.monotonic() - started >= seconds:
            break
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    responses.close()
    merged = count + lost
    ms = [x / 1e6 for x in latencies] or [float("nan")]
    return {
        "flows_per_s": merged / elapsed,
        "delivered_per_s": count / elapsed,
        "lost": lost,
        "relay_cpu_us_per_flow": cpu / max(1, merged) * 1e6,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "load": os.getloadavg()[0],
    }


def relay_modules(folder: str) -> tuple[Any, Any]:
    """wire and merge of another relay/ folder ("" for this checkout's), loaded beside this checkout's."""
    import importlib

    import flowscope.relay

    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if name.startswith("flowscope.relay.")}
    path = list(flowscope.relay.__path__)
    try:
        if folder:
            flowscope.relay.__path__[:] = [folder]
        wire = importlib.import_module("flowscope.relay.wire")
        merge = importlib.import_module("flowscope.relay.merge")
        return wire, merge
    finally:
        for name in [name for name in sys.modules if name.startswith("flowscope.relay.")]:
            del sys.modules[name]
        sys.modules.update(ours)
        flowscope.relay.__path__[:] = path


def merge_cost(wire: Any, merge: Any, per_node: int = LAST) -> float:
    """CPU µs per flow of the relay's own work on `--last` of three nodes, in one thread, no gRPC: each response
    scanned and pushed as a node stream does (round robin over the nodes), taken as the client handler does."""
    streams, base = {}, time.time_ns() - 60_000_000_000
    for index, node in enumerate(SYNTHETIC_NODES):
        flows = sample_flows(node)
        start = base + index * 1_000
        streams[node] = [flows[k % 16] + time_field(start + k * HISTORY_STEP_NS) for k in range(per_node)]
    merger = merge.Merger(relay_name="relay")
    for node in SYNTHETIC_NODES:
        merger.open(node, history=True, ends=True)
    taken = 0
    started = time.thread_time()  # CPU time: the figure does not depend on what else the machine runs
    for k in range(per_node):
        for node, stream in streams.items():
            raw = stream[k]
            scanned = wire.scan(raw)
            merger.push(node, scanned.time_ns, raw)
        if k % 64 == 63:
            while batch := merger.take(0):
                taken += len(batch)
    for node in SYNTHETIC_NODES:
        merger.close(node)
    merger.finish()
    while (batch := merger.take(0)) is not None:
        taken += len(batch)
    elapsed = time.thread_time() - started
    assert taken == per_node * len(SYNTHETIC_NODES), taken
    return elapsed / taken * 1e6


def measure_merge_cost(before: str, rounds: int) -> dict[str, list[float]]:
    """merge_cost of this checkout's relay and `before`'s, alternating in this one process."""
    codes = {"after": relay_modules("")} | ({"before": relay_modules(before)} if before else {})
    results: dict[str, list[float]] = {}
    for _ in range(max(3, rounds)):
        for version, (wire, merge) in codes.items():
            results.setdefault(version, []).append(merge_cost(wire, merge))
            print("merge in-process", version, f"{results[version][-1]:.1f} µs/flow", flush=True)
    return results


def measure_synthetic(
    seconds: float, before: str = "", rounds: int = 2
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every synthetic figure for this checkout's relay ("after") and, with `before`, another relay/ folder's,
    the two alternating within each setting so a slow minute of the machine hurts both alike."""
    import tempfile

    codes = {"after": ""} | ({"before": before} if before else {})
    results: dict[str, dict[str, list[dict[str, float]]]] = {}

    def record(setting: str, version: str, figures: dict[str, float]) -> None:
        results.setdefault(setting, {}).setdefault(version, []).append(figures)
        print(setting, version, {k: round(v, 2) for k, v in figures.items()}, flush=True)

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp:
        folder = Path(tmp)
        with synthetic_agents(folder, LAST, 0) as peers:
            for _ in range(rounds):
                for version, code in codes.items():
                    with relay_process(peers, code) as (address, pid):
                        record("last", version, synthetic_last(address, pid))
                        record("follow", version, synthetic_follow(address, pid, seconds))
        for rate in RATES:
            with synthetic_agents(folder, 0, rate / len(SYNTHETIC_NODES)) as peers:
                for _ in range(rounds):
                    for version, code in codes.items():
                        with relay_process(peers, code) as (address, pid):
                            record(f"rate {rate}", version, synthetic_follow(address, pid, max(3.0, seconds / 2)))
    return results


MANY_LAST = 2_000  # `--last` per node in front of many nodes (50 nodes: 100,000 flows)
AGENTS_PER_PROCESS = 10


def at_rest(peers: list[str], code: str) -> tuple[int, float]:
    """RSS (bytes) and CPU (seconds a second) of a relay connected to `peers` and asked nothing."""
    from common import rss_bytes

    with relay_process(peers, code) as (_, pid):
        time.sleep(3.0)  # connections made, first pings answered
        cpu0 = cpu_seconds(pid)
        time.sleep(3.0)
        return rss_bytes(pid), (cpu_seconds(pid) - cpu0) / 3.0


def many_figures(peers: list[str], code: str, seconds: float) -> dict[str, float]:
    """One relay's figures in front of all of `peers`: at rest (against 3 of them), `--last`, follow."""
    from common import rss_bytes

    count = len(peers)
    few_rss, few_cpu = at_rest(peers[:3], code)
    many_rss, many_cpu = at_rest(peers, code)
    figures = {
        "RSS (MiB)": many_rss / 2**20,
        "RSS per node beyond 3 (MiB)": (many_rss - few_rss) / (count - 3) / 2**20,
        "CPU at rest per node beyond 3 (ms/s)": (many_cpu - few_cpu) / (count - 3) * 1e3,
    }
    with relay_process(peers, code) as (address, pid):
        time.sleep(2.0)  # every node connected before the request
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        flows = sum(
            1 for raw in read_flows(address, observer_pb2.GetFlowsRequest(number=MANY_LAST)) if raw[:1] == b"\x0a"
        )
        figures[f"--last {MANY_LAST}: flows"] = flows
        figures[f"--last {MANY_LAST}: seconds"] = time.perf_counter() - start
        figures[f"--last {MANY_LAST}: relay CPU per flow (µs)"] = (cpu_seconds(pid) - cpu0) / flows * 1e6
        follow = synthetic_follow(address, pid, seconds)
        figures["follow: RSS after (MiB)"] = rss_bytes(pid) / 2**20
    figures["follow: merged flows/s"] = follow["flows_per_s"]
    figures["follow: delivered flows/s"] = follow["delivered_per_s"]
    figures["follow: relay CPU per flow (µs)"] = follow["relay_cpu_us_per_flow"]
    return figures


def paced_figures(address: str, pid: int, rate: int, seconds: float) -> dict[str, float]:
    """Follow through a relay whose nodes send `rate` flows a second in all: latency, delivery, relay CPU."""
    time.sleep(2.0)  # every node connected before the request
    follow = synthetic_follow(address, pid, seconds)
    return {
        f"follow at {rate:,} flows/s in all: p50 (ms)": follow["p50_ms"],
        f"follow at {rate:,} flows/s in all: p99 (ms)": follow["p99_ms"],
        f"follow at {rate:,} flows/s in all: max (ms)": follow["max_ms"],
        f"follow at {rate:,} flows/s in all: delivered flows/s": follow["delivered_per_s"],
        f"follow at {rate:,} flows/s in all: relay CPU per flow (µs)": follow["relay_cpu_us_per_flow"],
    }


def measure_many(
    count: int, seconds: float, before: str = "", rounds: int = 2, rates: Sequence[int] = (), paced_only: bool = False
) -> str:
    """A relay in front of `count` synthetic nodes: `--last` across them, follow as fast as they send, and what
    each node costs the relay at rest (RSS and CPU, against a relay of 3 nodes), then follow latency with the
    nodes sending `rates` flows a second in all, beside `before`'s relay (the two alternating)."""
    import tempfile

    codes = {"after": ""} | ({"before": before} if before else {})
    names = [f"node{k + 1}" for k in range(count)]
    rows: dict[str, dict[str, list[float]]] = {}

    def record(version: str, figures: dict[str, float]) -> None:
        for figure, value in figures.items():
            rows.setdefault(figure, {}).setdefault(version, []).append(value)
            print(f"{count} nodes", version, figure, round(value, 2), flush=True)

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp:
        if not paced_only:
            with synthetic_agents(Path(tmp), MANY_LAST, 0, names, AGENTS_PER_PROCESS) as peers:
                for _ in range(rounds):
                    for version, code in codes.items():
                        record(version, many_figures(peers, code, seconds))
        for rate in rates:
            with synthetic_agents(Path(tmp), 0, rate / count, names, AGENTS_PER_PROCESS) as peers:
                for _ in range(rounds):
                    for version, code in codes.items():
                        with relay_process(peers, code) as (address, pid):
                            record(version, paced_figures(address, pid, rate, seconds))
    versions = list(codes)[::-1]
    table = "\n".join(
        f"| {figure} | " + " | ".join(f"{statistics.median(values[v]):,.2f}" for v in versions) + " |"
        for figure, values in rows.items()
    )
    return f"""A relay in front of {count} synthetic nodes ({AGENTS_PER_PROCESS} agents a process), medians of {rounds}:

| figure | {" | ".join(versions)} |
|---|{"---|" * len(versions)}
{table}"""


def profile_relay(seconds: float, folder: Path, code: str = "") -> None:
    """A relay (code: another relay/ folder), every thread under cProfile, through `--last 20000`
    (folder/last.prof) and, in a relay of its own, a follow run as fast as it goes (folder/follow.prof)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp, synthetic_agents(Path(tmp), LAST, 0) as peers:
        with relay_process(peers, code, str(folder / "last.prof")) as (address, pid):
            print("last", synthetic_last(address, pid), flush=True)
        with relay_process(peers, code, str(folder / "follow.prof")) as (address, pid):
            print("follow", synthetic_follow(address, pid, seconds), flush=True)


# --- the run -----------------------------------------------------------------------------------------------


def latency_rows(latency: dict[str, float]) -> list[tuple[str, str]]:
    rate = f"{latency['rate']:,.0f} flows/s"
    return [
        (
            f"added latency of the merged follow stream at {rate}, packet timestamp to client receipt, p50 / p99",
            f"{latency['relay_p50']:.1f} ms / {latency['relay_p99']:.1f} ms (max {latency['relay_max']:.1f} ms, "
            f"{latency['flows']:,.0f} flows; load {latency['load']:.1f})",
        ),
        (
            f"the same straight from one agent at {rate} (the agent's own pipeline), p50 / p99",
            f"{latency['agent_p50']:.1f} ms / {latency['agent_p99']:.1f} ms",
        ),
        (
            f"flows out of time order in the merged follow stream at {rate} (in one agent's own stream)",
            f"{latency['out_of_order']:,.0f}, by up to {latency['out_of_order_max']:.1f} ms "
            f"({latency['agent_out_of_order']:,.0f})",
        ),
    ]


def report(latencies: list[dict[str, float]], last: dict[str, float], synthetic: dict[str, float], args: str) -> str:
    rows = [
        *(row for latency in latencies for row in latency_rows(latency)),
        (
            f"`--last 20000` over three nodes through the relay (gRPC client, {last['responses']:,.0f} responses)",
            f"{last['relay_s']:.2f} s",
        ),
        (
            f"the same from the three agents in parallel, unmerged ({last['direct_flows']:,.0f} flows)",
            f"{last['direct_s']:.2f} s",
        ),
        ("`flowscope observe --last 20000 -o jsonpb > /dev/null` through the relay", f"{last['cli_s']:.2f} s"),
        (
            "relay throughput, merging `--last 20000` of three nodes",
            f"{last['flows_per_s']:,.0f} flows/s (load {last['load']:.1f})",
        ),
        (
            "relay throughput, follow mode, three synthetic agents sending as fast as they can",
            f"{synthetic['flows_per_s']:,.0f} flows/s merged, {synthetic['relay_cpu_us_per_flow']:.0f} µs of relay "
            f"CPU per flow ({synthetic['delivered_per_s']:,.0f}/s read by the client, the rest LostEvents; "
            f"load {synthetic['load']:.1f})",
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    version = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=PROJECT, check=False
    ).stdout.strip()
    return f"""Measured with `.venv/bin/python bench/relay_bench.py {args}` (tree {version}) on a three-node lab: real
agents, the lab's relay in the root namespace reaching them over their unix sockets, 2 cores shared by
everything, also with other people's test runs: the load figures are the 1-minute load average after each part.

| figure | value |
|---|---|
{table}

Hubble's relay holds every flow up to 1 s (`sort-buffer-drain-timeout`); flowscope's holds a flow only until
every node has passed its time, and at most 50 ms (`--sort-window`)."""


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def synthetic_report(
    results: dict[str, dict[str, list[dict[str, float]]]], merge: dict[str, list[float]], used: str
) -> str:
    """The synthetic figures as a table, this checkout's relay beside the `--before` one when it ran."""
    versions = [v for v in ("before", "after") if v in results["last"]]
    head = " | ".join(versions)
    rows = [
        "| the relay's own work on `--last 20000` of 3 nodes (scan, merge, take; one thread, no gRPC), per flow | "
        + " | ".join(f"{statistics.median(merge[v]):.1f} µs" for v in versions)
        + " |"
    ]

    def row(name: str, setting: str, show: Callable[[list[dict[str, float]]], str]) -> None:
        rows.append(f"| {name} | " + " | ".join(show(results[setting][v]) for v in versions) + " |")

    row(
        "`--last 20000`, 3 nodes (60,000 flows): seconds to the last",
        "last",
        lambda r: f"{_median(r, 'seconds'):.2f} s",
    )
    row(
        "the same: merged flows/s, relay CPU per flow",
        "last",
        lambda r: f"{_median(r, 'flows_per_s'):,.0f}/s, {_median(r, 'cpu_us_per_flow'):.0f} µs",
    )
    row(
        "follow, agents as fast as they can: merged flows/s (read by the client), relay CPU per flow",
        "follow",
        lambda r: (
            f"{_median(r, 'flows_per_s'):,.0f}/s ({_median(r, 'delivered_per_s'):,.0f}/s), "
            f"{_median(r, 'relay_cpu_us_per_flow'):.0f} µs"
        ),
    )
    for rate in RATES:
        row(
            f"follow at {rate:,} flows/s: flow time to receipt p50 / p99 (max); relay CPU per flow",
            f"rate {rate}",
            lambda r: (
                f"{_median(r, 'p50_ms'):.1f} / {_median(r, 'p99_ms'):.1f} ms ({_median(r, 'max_ms'):.0f}); "
                f"{_median(r, 'relay_cpu_us_per_flow'):.0f} µs"
                + (f", {sum(x['lost'] for x in r):,.0f} lost" if any(x["lost"] for x in r) else "")
            ),
        )
    table = "\n".join(rows)
    return f"""Command: `.venv/bin/python bench/relay_bench.py {used}`; medians of the rounds, before and after
alternating.

| figure | {head} |
|---|{"---|" * len(versions)}
{table}"""


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--synthetic-agent":
        spec, history, rate, newest = sys.argv[2:6]
        serve_synthetic(spec, int(history), float(rate), int(newest))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (10)")
    parser.add_argument("--rate", type=float, default=25.0, help="UDP exchanges per second per pair (25)")
    parser.add_argument("--stress-rate", type=float, default=200.0, help="the same, for the second run (200)")
    parser.add_argument("--write", action="store_true", help="replace the Relay section of bench/RESULTS.md")
    parser.add_argument("--synthetic-only", action="store_true", help="only the synthetic agents' figures")
    parser.add_argument("--before", default="", help="another checkout's relay/ folder, measured beside this one")
    parser.add_argument("--rounds", type=int, default=2, help="synthetic runs of each relay per setting (2)")
    parser.add_argument("--profile", type=Path, help="profile the relay (--before's, if given) into this folder")
    parser.add_argument("--nodes", type=int, help="only a relay in front of this many synthetic nodes (e.g. 50)")
    parser.add_argument(
        "--node-rates", default="200,1000", help="with --nodes: follow latency at these flows/s in all (200,1000)"
    )
    parser.add_argument("--paced-only", action="store_true", help="with --nodes: only the --node-rates runs")
    args = parser.parse_args()
    if args.nodes:
        rates = [int(r) for r in args.node_rates.split(",") if r]
        print(measure_many(args.nodes, args.seconds, args.before, args.rounds, rates, args.paced_only))
        return 0
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile_relay(args.seconds, args.profile.resolve(), args.before)
        return 0
    if args.synthetic_only:
        before = f" --before {args.before}" if args.before else ""
        used = f"--synthetic-only --seconds {args.seconds:g} --rounds {args.rounds}{before}"
        merge = measure_merge_cost(args.before, args.rounds)
        print(synthetic_report(measure_synthetic(args.seconds, args.before, args.rounds), merge, used))
        return 0
    used = f"--seconds {args.seconds:g} --rate {args.rate:g} --stress-rate {args.stress_rate:g}"
    with Lab(f"t{os.getpid()}-rbench", nodes=3, agent_command=AGENT) as lab:
        lab.up(traffic=False, agent=True, relay=True)
        print(f"lab up; relay on {lab.relay_address}", flush=True)
        latencies = [measure_latency(lab, args.seconds, rate) for rate in (args.rate, args.stress_rate)]
        print(latencies, flush=True)
        print("rings:", fill(lab, LAST), flush=True)
        last = measure_last(lab)
        print(last, flush=True)
    synthetic = measure_synthetic(args.seconds, rounds=1)["follow"]["after"][0]
    print(synthetic, flush=True)
    text = report(latencies, last, synthetic, used)
    print(text)
    if args.write:
        update_results("Relay", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
