"""Shared pieces of the benchmarks: iperf3 between lab pods, a paced flood and what the agent spends on it, an
agent's CPU and memory, RESULTS.md sections.

Benchmarks measure side by side in one run (with and without the agent, flowscope and tcpdump), alternating
the runs so a slow minute of the machine hurts both sides alike, and report the median of each.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
IPERF_PORT = 5201
FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
NODE = "node1"


@contextmanager
def agent(
    lab: Lab, level: str = "none", command: Sequence[str] | None = None, extra_args: Sequence[str] = ()
) -> Iterator[int]:
    """The lab's agent on node1 (its pid), set to monitor aggregation `level` while it runs; `command` runs
    another checkout's agent instead of this one's, `extra_args` go on its command line."""
    lab.agent_command = list(command) if command else None
    (daemon,) = lab.start_agents(extra_args=extra_args)
    try:
        server = f"unix://{lab.agent_socket(NODE)}"
        subprocess.run(
            [FLOWSCOPE, "config", "set", "monitor-aggregation", level, "--server", server],
            check=True,
            capture_output=True,
        )
        yield daemon.pid
    finally:
        lab.stop(daemon)


@dataclass(frozen=True)
class Throughput:
    tcp_gbps: float
    udp64_pps: float  # 64-byte datagrams delivered per second


def iperf3(lab: Lab, client: str, server: str, args: list[str], seconds: float) -> dict:
    """One iperf3 run from pod to pod (a one-off server in the server pod); its JSON report."""
    server_ip = lab.pod(server).ipv4
    srv = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns(server), "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        out = lab.exec(
            client,
            # -A: client on CPU 0, server on CPU 1, so runs compare like with like
            ["iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-A", "0,1", "-J", *args],
            timeout=seconds + 30,
        ).stdout
    finally:
        srv.wait(timeout=30)
    return json.loads(out)


def tcp_gbps(lab: Lab, seconds: float) -> float:
    report = iperf3(lab, "client", "server", [], seconds)
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def udp64_pps(lab: Lab, seconds: float) -> float:
    """Datagrams of 64 bytes, sent as fast as the client can: what the server received per second."""
    report = iperf3(lab, "client", "server", ["-u", "-l", "64", "-b", "0"], seconds)
    total = report["end"]["sum"]
    return float(total["packets"] - total["lost_packets"]) / float(total["seconds"])


def settle(read: Callable[[], int], quiet_s: float = 1.0, limit_s: float = 60.0) -> None:
    """Waits until `read()` stops changing for quiet_s (the agent's count, the client's lines)."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def flood(lab: Lab, pps: float, seconds: float) -> None:
    """64-byte UDP datagrams client → server at `pps` (iperf3's pacing), for `seconds`."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("server"), "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        target = ["-c", lab.pod("server").ipv4, "-p", str(IPERF_PORT)]
        paced = ["-u", "-l", "64", "-b", str(int(pps * 64 * 8)), "--pacing-timer", "100"]
        lab.exec("client", ["iperf3", *target, *paced, "-t", str(seconds), "-A", "0"], timeout=seconds + 30)
    finally:
        server.wait(timeout=30)


def events_per_packet(lab: Lab) -> float:
    """How many events the agent makes of one datagram (its observation points at level none)."""
    before = server_status(lab).seen_flows
    flood(lab, 2000, 1)
    settle(lambda: server_status(lab).seen_flows)
    return max(1.0, (server_status(lab).seen_flows - before) / 2000)


@dataclass(frozen=True)
class Ingest:
    """What an agent took in during one flood, and the CPU time (user + system, all threads) it spent on it."""

    events: int
    cpu_s: float

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / max(1, self.events) * 1e6


def ingest(lab: Lab, pid: int, pps: float, seconds: float, drained: Callable[[], None] | None = None) -> Ingest:
    """The agent `pid`'s cost of one `flood`: its count and CPU read before the flood and after its count
    settles, and after `drained` returns (what else must finish its work first: an exporter's file, a writer's
    table), so work the flood caused is counted even when it ends late."""
    start, cpu0 = server_status(lab).seen_flows, cpu_seconds(pid)
    flood(lab, pps, seconds)
    settle(lambda: server_status(lab).seen_flows)
    if drained is not None:
        drained()
    end, cpu1 = server_status(lab).seen_flows, cpu_seconds(pid)
    return Ingest(end - start, cpu1 - cpu0)


def alternating(variants: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, variant) for `rounds` rounds (from 0), the variants in turn forwards and backwards, so that a
    slow minute of this shared machine, or what one run leaves behind, hurts every variant alike."""
    for number in range(rounds):
        for variant in variants if number % 2 == 0 else variants[::-1]:
            yield number, variant


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio_interval(
    values: list[float], base: list[float], level: float = 0.9, resamples: int = 2000
) -> tuple[float, float]:
    """A bootstrap interval for median(values) / median(base), both measured in the same rounds: rounds are
    drawn again with replacement (a round keeps its pair), so the machine's slow and fast minutes weigh on
    both sides as they did. On a noisy machine, this says how far a ratio can be trusted."""
    rng = random.Random(0)
    rounds = range(len(base))
    ratios = []
    for _ in range(resamples):
        drawn = rng.choices(rounds, k=len(base))
        ratios.append(median([values[i] for i in drawn]) / median([base[i] for i in drawn]))
    ratios.sort()
    tail = (1 - level) / 2
    return ratios[int(tail * resamples)], ratios[min(resamples - 1, int((1 - tail) * resamples))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert match
    return int(match.group(1)) * 1024


def server_status(lab: Lab, node: str = "node1") -> observer_pb2.ServerStatusResponse:
    with grpc.insecure_channel(f"unix://{lab.agent_socket(node)}") as channel:
        return observer_pb2_grpc.ObserverStub(channel).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)


def update_results(title: str, body: str) -> None:
    """Replace (or add) the `## title` section of bench/RESULTS.md, leaving the other sections alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")
