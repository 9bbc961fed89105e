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
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc

from common import cpu_seconds, update_results
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
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


def serve_synthetic(nodes: list[str], folder: Path) -> None:
    """Serve GetFlows as node `name` on folder/name.sock: in follow mode, flows stamped now, as fast as gRPC
    takes them. Runs in a child process (`--synthetic`), so the agents' Python is not the relay's."""
    from flowscope.api.flow import flow_pb2

    def agent(name: str) -> grpc.GenericRpcHandler:
        template = observer_pb2.GetFlowsResponse(node_name=name)
        f = template.flow
        f.node_name, f.verdict, f.Summary = name, flow_pb2.FORWARDED, "UDP"
        f.IP.source, f.IP.destination, f.IP.ipVersion = "10.200.1.11", "10.200.2.11", flow_pb2.IPv4
        f.l4.UDP.source_port, f.l4.UDP.destination_port = 40000, 9001
        f.source.namespace, f.source.pod_name = "default", "client"
        f.destination.namespace, f.destination.pod_name = "default", "server"
        f.trace_observation_point = flow_pb2.TO_NETWORK

        def get_flows(request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
            while context.is_active():
                now = time.time_ns()
                template.time.FromNanoseconds(now)
                template.flow.time.FromNanoseconds(now)
                yield template.SerializeToString()

        handler = grpc.unary_stream_rpc_method_handler(
            get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString
        )
        return grpc.method_handlers_generic_handler("observer.Observer", {"GetFlows": handler})

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    servers = []
    for name in nodes:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((agent(name),))
        server.add_insecure_port(f"unix://{folder / name}.sock")
        server.start()
        servers.append(server)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def _with_parent() -> None:
    """In a child: receive SIGTERM when the benchmark dies, even by kill -9 (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def measure_synthetic(seconds: float) -> dict[str, float]:
    """Follow through a relay (a `flowscope relay` process) fed by three synthetic agents; flows per second."""
    import tempfile

    from flowscope.lab.relay import free_address

    folder = Path(tempfile.mkdtemp(prefix="fs-rbench-"))
    nodes = ["node1", "node2", "node3"]
    agents = subprocess.Popen([sys.executable, __file__, "--synthetic", str(folder), *nodes], preexec_fn=_with_parent)
    address = free_address()
    peers = [f"{n}=unix://{folder / n}.sock" for n in nodes]
    relay = subprocess.Popen(
        [sys.executable, "-m", "flowscope.cli.main", "relay", "--listen-address", address, "--peers", *peers],
        cwd=PROJECT,
        stderr=subprocess.DEVNULL,
        preexec_fn=_with_parent,
    )
    try:
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=15)
        time.sleep(1.0)
        get_flows = channel.unary_stream(
            "/observer.Observer/GetFlows", request_serializer=observer_pb2.GetFlowsRequest.SerializeToString
        )
        call = get_flows(observer_pb2.GetFlowsRequest(follow=True))
        count, lost, started, cpu0 = 0, 0, 0.0, 0.0
        for raw in call:
            if not started and count == 1000:  # warmed up: start counting
                count, started, cpu0 = 0, time.monotonic(), cpu_seconds(relay.pid)
            count += 1
            if b"\x1a" == raw[:1]:  # a lost event (field 3) from the relay's client buffer
                lost += observer_pb2.GetFlowsResponse.FromString(raw).lost_events.num_events_lost
            if started and time.monotonic() - started >= seconds:
                break
        elapsed, cpu = time.monotonic() - started, cpu_seconds(relay.pid) - cpu0
        call.cancel()
        merged = count + lost  # what the relay took in and merged; `lost` of it the client was too slow for
        return {
            "flows_per_s": merged / elapsed,
            "load": os.getloadavg()[0],
            "delivered_per_s": count / elapsed,
            "relay_cpu_us_per_flow": cpu / merged * 1e6,
            "lost": lost,
        }
    finally:
        for proc in (relay, agents):
            proc.terminate()
            proc.wait(10)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


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


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--synthetic":
        serve_synthetic(sys.argv[3:], Path(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (10)")
    parser.add_argument("--rate", type=float, default=25.0, help="UDP exchanges per second per pair (25)")
    parser.add_argument("--stress-rate", type=float, default=200.0, help="the same, for the second run (200)")
    parser.add_argument("--write", action="store_true", help="replace the Relay section of bench/RESULTS.md")
    args = parser.parse_args()
    used = f"--seconds {args.seconds:g} --rate {args.rate:g} --stress-rate {args.stress_rate:g}"
    with Lab(f"t{os.getpid()}-rbench", nodes=3, agent_command=AGENT) as lab:
        lab.up(traffic=False, agent=True, relay=True)
        print(f"lab up; relay on {lab.relay_address}", flush=True)
        latencies = [measure_latency(lab, args.seconds, rate) for rate in (args.rate, args.stress_rate)]
        print(latencies, flush=True)
        print("rings:", fill(lab, LAST), flush=True)
        last = measure_last(lab)
        print(last, flush=True)
    synthetic = measure_synthetic(args.seconds)
    print(synthetic, flush=True)
    text = report(latencies, last, synthetic, used)
    print(text)
    if args.write:
        update_results("Relay", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
