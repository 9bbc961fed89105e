"""The relay of a three-node lab with real agents, measured by bench/relay_bench.py: added latency of the merged
follow stream, and `--last 20000` through the relay, straight from the agents and through `flowscope observe`.

Set FLOWSCOPE_RELAY_TEST_AGENT to run another agent build (see tests/relay/relay_lab.py).
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from relay_runner import LAST, PROJECT, percentile

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

AGENT = shlex.split(os.environ.get("FLOWSCOPE_RELAY_TEST_AGENT", "")) or [
    sys.executable,
    str(PROJECT / "tests" / "relay" / "agent_with_peers.py"),
]

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
