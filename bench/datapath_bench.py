"""What observing costs the traffic, and what the agent costs: measured side by side in one run.

    .venv/bin/python bench/datapath_bench.py [--seconds 5] [--rounds 3] [--write]

On a one-node lab without background traffic:
- iperf3 TCP throughput and UDP 64-byte packet rate between two pods, alternating rounds without any observer,
  with a tc program that does nothing on the same hooks (the floor of any tc-based observer), with the flowscope
  agent at monitor aggregation none (an event per packet and observation point) and at medium (the agent's
  default), and with tcpdump capturing the client pod's veth (-w /dev/null); ratios of
  the medians against no observer, and the events per second the agent stored at each level;
- events per second the agent ingests per CPU-second of its own, and how many were lost, during the UDP flood
  at level none;
- bytes of memory per stored flow (resident memory grown while the ring fills, over the ring's capacity), the
  agent's memory with a full ring, and its start-up time from launch to its first flow.
With --write the figures replace the "Datapath" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from common import (
    agent,
    cpu_seconds,
    median,
    ratio_interval,
    rss_bytes,
    server_status,
    tcp_gbps,
    udp64_pps,
    update_results,
)
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

CAPACITY = 65535
VARIANTS = ("none", "tc floor", "flowscope none", "flowscope medium", "tcpdump")
TC_FLOOR = Path(__file__).resolve().parent / "tc_floor.py"


@contextmanager
def tcpdump(lab: Lab) -> Iterator[None]:
    ifname = lab.pod("client").ifname
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("node1"), "tcpdump", "-i", ifname, "-n", "-s", "128", "-w", "/dev/null"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    proc.stderr.readline()  # "listening on ..."
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def tc_floor(lab: Lab) -> Iterator[None]:
    """A tc program that does nothing (bench/bpf/tc_floor.c) on every hook the agent would use."""
    devices = ["eth0", *(pod.ifname for pod in lab.pods if pod.node == "node1")]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("node1"), sys.executable, str(TC_FLOOR), *devices],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TC_FLOOR.parent.parent)},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "attached":
        proc.wait(timeout=10)
        raise RuntimeError(f"bench/tc_floor.py did not attach (exit {proc.returncode})")
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def alternate(
    lab: Lab, measure: Callable[[Lab], float], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The same measurement without an observer, with a tc program that does nothing, with the agent at none and
    at medium, and with tcpdump, in alternating rounds; and the events per second the agent stored meanwhile, by
    level."""
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    events: dict[str, list[float]] = {"none": [], "medium": []}
    for _ in range(rounds):
        results["none"].append(measure(lab))
        with tc_floor(lab):
            results["tc floor"].append(measure(lab))
        for level in ("none", "medium"):
            with agent(lab, level):
                before, started = server_status(lab).seen_flows, time.monotonic()
                results[f"flowscope {level}"].append(measure(lab))
                time.sleep(0.2)  # the last batches
                stored = server_status(lab).seen_flows - before
                events[level].append(stored / (time.monotonic() - started))
        with tcpdump(lab):
            results["tcpdump"].append(measure(lab))
    return results, events


def ingest_rate(lab: Lab, seconds: float) -> tuple[float, float, int, int]:
    """During a UDP flood: events/s, agent CPU-seconds per second, events per CPU-second, events lost."""
    with agent(lab) as pid:
        before, cpu0, t0 = server_status(lab), cpu_seconds(pid), time.monotonic()
        udp64_pps(lab, seconds)
        time.sleep(0.5)  # the last batches
        after, cpu1, t1 = server_status(lab), cpu_seconds(pid), time.monotonic()
    events = after.seen_flows - before.seen_flows
    lost = after.flowscope_lost.kernel_buffer - before.flowscope_lost.kernel_buffer
    cpu = cpu1 - cpu0
    return events / (t1 - t0), cpu / (t1 - t0), int(events / cpu) if cpu else 0, lost


def startup_and_memory(lab: Lab) -> tuple[float, int, int, int]:
    """Launch → first flow (s); RSS with an empty ring, with a full one; bytes per stored flow."""
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("client"), "ping", "-i", "0.01", lab.pod("server").ipv4],
        stdout=subprocess.DEVNULL,
    )
    try:
        launched = time.time_ns()
        with agent(lab) as pid:
            with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
                stub = observer_pb2_grpc.ObserverStub(channel)
                first = next(iter(stub.GetFlows(observer_pb2.GetFlowsRequest(first=True, number=1), timeout=10)))
            startup = (first.time.ToNanoseconds() - launched) / 1e9
            empty = rss_bytes(pid)
            fill_ring(lab)
            full = rss_bytes(pid)
    finally:
        pinger.terminate()
        pinger.wait()
    return startup, empty, full, (full - empty) // CAPACITY


def fill_ring(lab: Lab) -> None:
    """Send datagrams until the ring has wrapped (each datagram is two events: leaving and arriving)."""
    while server_status(lab).seen_flows < 2 * CAPACITY:
        udp64_pps(lab, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each iperf3 run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    args = parser.parse_args()

    with Lab(f"b{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        tcp, tcp_events = alternate(lab, lambda lab: tcp_gbps(lab, args.seconds), args.rounds)
        udp, udp_events = alternate(lab, lambda lab: udp64_pps(lab, args.seconds), args.rounds)
        rate, cpu_share, per_cpu_second, lost = ingest_rate(lab, args.seconds)
        startup, empty, full, per_flow = startup_and_memory(lab)

    def ratio(table: dict[str, list[float]], who: str) -> float:
        return median(table[who]) / median(table["none"])

    def row(name: str, table: dict[str, list[float]], fmt: str) -> str:
        values = " | ".join(format(median(table[v]), fmt) for v in VARIANTS)
        ratios = " | ".join(f"**{ratio(table, v):.3f}**" for v in VARIANTS[1:])
        return f"| {name} | {values} | {ratios} |"

    def interval(name: str, table: dict[str, list[float]]) -> str:
        cells = []
        for v in VARIANTS[1:]:
            low, high = ratio_interval(table[v], table["none"])
            cells.append(f"{low:.3f} – {high:.3f}")
        return f"| {name} | {' | '.join(cells)} |"

    def spread(name: str, table: dict[str, list[float]], fmt: str) -> str:
        cells = " | ".join(f"{format(min(table[v]), fmt)} – {format(max(table[v]), fmt)}" for v in VARIANTS)
        return f"| {name} | {cells} |"

    lines = [
        "| measurement | no observer | tc floor | flowscope, none | flowscope, medium | tcpdump "
        "| ratio tc floor | ratio none | ratio medium | ratio tcpdump |",
        "|---|---|---|---|---|---|---|---|---|---|",
        row("iperf3 TCP (Gbit/s)", tcp, ".2f"),
        row("iperf3 UDP 64 B (packets/s)", udp, ",.0f"),
        "",
        "| spread of the rounds (min – max) | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
        spread("iperf3 TCP (Gbit/s)", tcp, ".1f"),
        spread("iperf3 UDP 64 B (packets/s)", udp, ",.0f"),
        "",
        "| ratio, 90% bootstrap interval over the rounds | " + " | ".join(VARIANTS[1:]) + " |",
        "|---|" + "---|" * (len(VARIANTS) - 1),
        interval("iperf3 TCP", tcp),
        interval("iperf3 UDP 64 B", udp),
        "",
        "| events stored per second | at none | at medium |",
        "|---|---|---|",
        f"| during iperf3 TCP | {median(tcp_events['none']):,.0f} | {median(tcp_events['medium']):,.0f} |",
        f"| during iperf3 UDP 64 B | {median(udp_events['none']):,.0f} | {median(udp_events['medium']):,.0f} |",
        "",
        f"- Agent ingest during the UDP flood at none: {rate:,.0f} events/s using {cpu_share:.2f} CPU, i.e. "
        f"**{per_cpu_second:,} events per CPU-second**; events lost in the kernel buffer: **{lost}**.",
        f"- Memory per stored flow: **{per_flow} bytes** (resident memory grown while the ring of {CAPACITY:,} "
        f"filled); agent resident memory with a full ring: **{full / 2**20:.0f} MiB** "
        f"({empty / 2**20:.0f} MiB with an empty one).",
        f"- Start-up, from launching the agent to the time of its first flow: **{startup:.2f} s**.",
        f"- Medians of {args.rounds} alternating rounds of {args.seconds:g} s; one-node lab, pods client → server.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "sudo .venv/bin/python bench/datapath_bench.py " + " ".join(sys.argv[1:])
        update_results("Datapath", f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\n{report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
