"""What Prometheus metrics cost the agent: its CPU per event with metrics off and on, under the same flood.

    .venv/bin/python bench/metrics_bench.py [--rate 100000] [--seconds 5] [--rounds 3] [--write]

A one-node lab without background traffic; per round, one agent per variant in turn (alternating, so a slow
minute of this shared machine hurts every variant alike), at monitor aggregation none (an event per packet and
observation point), while iperf3 sends 64-byte UDP datagrams client -> server paced so that the agent ingests
about `--rate` events/s (bench/common.py's flood). The agent's CPU time (user + system, all threads) is read
around the flood and until its count settles, and divided by the events it ingested. The variants:

- off: no --metrics-address
- default: --metrics-address with the default handlers (flow, drop, tcp, port-distribution, icmp, policy)
- all+context: every handler, each with sourceContext=pod|ip;destinationContext=pod|ip

With metrics on, the bench scrapes /metrics once a second during the flood, as a Prometheus would. Reported:
the median µs of agent CPU per event for each variant, and what metrics add to the agent's cost per event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import FLOWSCOPE, NODE, agent, alternating, events_per_packet, ingest, update_results
from flowscope.lab import Lab, netns

METRICS_PORT = 9965
CONTEXT = "sourceContext=pod|ip;destinationContext=pod|ip"
ALL = ["flow", "drop", "tcp", "port-distribution", "icmp", "policy", "dns", "http"]
VARIANTS: dict[str, list[str]] = {
    "off": [],
    "default": ["--metrics-address", f"127.0.0.1:{METRICS_PORT}"],
    "all+context": [
        "--metrics-address",
        f"127.0.0.1:{METRICS_PORT}",
        "--metrics",
        " ".join(f"{name}:{CONTEXT}" for name in ALL),
    ],
}
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def scraping(lab: Lab, on: bool) -> Iterator[list[int]]:
    """Scrape /metrics once a second from inside the node (over loopback, unobserved) while the block runs;
    yields the list of scraped sizes."""
    sizes: list[int] = []
    stop = threading.Event()

    def scrape() -> None:
        with netns.inside(lab.netns(NODE)):
            while not stop.wait(1.0):
                with DIRECT.open(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as reply:
                    sizes.append(len(reply.read()))

    thread = threading.Thread(target=scrape, daemon=True)
    if on:
        thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        if on:
            thread.join(timeout=10)


@dataclass(frozen=True)
class Run:
    variant: str
    events: int
    cpu_s: float
    scrapes: int

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / max(1, self.events) * 1e6


def one_run(lab: Lab, variant: str, rate: float, seconds: float) -> Run:
    with agent(lab, extra_args=VARIANTS[variant]) as pid:
        per_packet = events_per_packet(lab)  # also warms the agent up: its first batches, its first scrape
        with scraping(lab, variant != "off") as sizes:
            cost = ingest(lab, pid, rate / per_packet, seconds)
    return Run(variant, cost.events, cost.cpu_s, len(sizes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100_000, help="events/s the agent should ingest")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    args = parser.parse_args()
    runs: list[Run] = []
    with Lab("mbench") as lab:
        lab.up(traffic=False, agent=False)
        for round_number, variant in alternating(list(VARIANTS), args.rounds):
            run = one_run(lab, variant, args.rate, args.seconds)
            runs.append(run)
            print(
                f"round {round_number + 1} {variant:12} {run.events:>9,} events"
                f" {run.cpu_s:6.2f} s CPU {run.us_per_event:6.2f} us/event ({run.scrapes} scrapes)",
                flush=True,
            )
    medians = {v: statistics.median(r.us_per_event for r in runs if r.variant == v) for v in VARIANTS}
    rates = {v: statistics.median(r.events / args.seconds for r in runs if r.variant == v) for v in VARIANTS}
    rows = [
        "| variant | events/s ingested (median) | agent CPU µs/event (median) | added by metrics |",
        "|---|---|---|---|",
    ]
    for variant in VARIANTS:
        added = medians[variant] - medians["off"]
        rows.append(
            f"| {variant} | {rates[variant]:,.0f} | {medians[variant]:.2f} |"
            f" {'—' if variant == 'off' else f'{added:+.2f} µs'} |"
        )
    table = "\n".join(rows)
    print(table)
    if args.write:
        command = " ".join([".venv/bin/python", "bench/metrics_bench.py", *sys.argv[1:]])
        update_results(
            "Prometheus metrics (issue 16)",
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')}), {FLOWSCOPE}.\n\n{table}",
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
