"""What the datapath costs the kernel per packet in real traffic: ns per run of the entry programs, by level.

    .venv/bin/python bench/bpf_cost.py [--seconds 4] [--rounds 3] [--levels none,medium] [--before CHECKOUT] [--write]

On a one-node lab with the real agent attached (pods' veths and the node's eth0): for each monitor aggregation
level, iperf3 TCP and then a UDP 64-byte flood between two pods, while the kernel's BPF statistics count the
time and the runs of our four entry programs (their tail calls run inside them, so they are included). Prints,
per level and traffic, the medians over rounds of: ns per run, runs per second, the share of one CPU spent in
the datapath, and the traffic's own throughput.

The statistics are on only while this runs: it holds a BPF_ENABLE_STATS file descriptor, which the kernel
counts together with the sysctl kernel.bpf_stats_enabled and forgets when the descriptor closes, however this
process ends (an error, a signal, kill -9), so the sysctl is never left changed.

With --before, the agent of an older checkout (its own observer package and bpf/ sources, run by this Python)
is measured in turns with this one (first one, then the other first), so that both meet the same load; each
figure is then given for both.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import NODE, agent, tcp_gbps, udp64_pps, update_results
from flowscope.lab import Lab
from flowscope.observer.datapath.bpfsys import bpf
from flowscope.observer.datapath.tc import ENTRY_PROGRAMS

HERE = Path(__file__).resolve()
BPF_ENABLE_STATS = 32  # bpf(2) command
BPF_STATS_RUN_TIME = 0
TRAFFIC: dict[str, tuple[Callable[[Lab, float], float], str]] = {
    "TCP": (tcp_gbps, "Gbit/s"),
    "UDP-64": (udp64_pps, "packets/s"),
}


class _EnableStatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


@contextmanager
def bpf_stats() -> Iterator[None]:
    """BPF run-time statistics on (run_time_ns, run_cnt) for as long as the block runs, and not after."""
    fd = bpf(BPF_ENABLE_STATS, _EnableStatsAttr(type=BPF_STATS_RUN_TIME))
    try:
        yield
    finally:
        os.close(fd)


def entry_programs(lab: Lab) -> set[int]:
    """Ids of our entry programs on the node's devices (pods' host-side veths and eth0)."""
    return {found.prog_id for found in lab.attached_programs(NODE) if found.name in ENTRY_PROGRAMS}


def run_stats(ids: set[int]) -> tuple[int, int]:
    """Total run_time_ns and run_cnt of these programs so far."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    programs = [p for p in json.loads(out) if p.get("id") in ids]
    if len(programs) != len(ids):
        raise RuntimeError(f"programs {sorted(ids)}: only {len(programs)} loaded")
    return sum(p.get("run_time_ns", 0) for p in programs), sum(p.get("run_cnt", 0) for p in programs)


def agent_command(tree: Path) -> list[str]:
    """The command that runs the agent of a checkout: the same launcher for every checkout, so that only their
    code differs (it imports the checkout's own cli and observer packages, which find their own bpf/)."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from cli.main import main; sys.exit(main())"
    return [sys.executable, "-c", code]


Sample = dict[str, float]


def measure(lab: Lab, tree: Path, level: str, seconds: float) -> dict[str, Sample]:
    """One run of each traffic under one agent: traffic name -> ns/run, runs/s, CPU share, throughput."""
    samples: dict[str, Sample] = {}
    with agent(lab, level, agent_command(tree)):
        ids = entry_programs(lab)
        for name, (traffic, _) in TRAFFIC.items():
            ns0, runs0 = run_stats(ids)
            t0 = time.monotonic()
            throughput = traffic(lab, seconds)
            ns1, runs1 = run_stats(ids)
            elapsed = time.monotonic() - t0
            runs = runs1 - runs0
            samples[name] = {
                "ns_per_run": (ns1 - ns0) / runs if runs else float("nan"),
                "runs_per_s": runs / elapsed,
                "cpu_share": (ns1 - ns0) / 1e9 / elapsed,
                "throughput": throughput,
            }
    return samples


def commit_of(tree: Path) -> str:
    """The checkout's commit, marked -dirty when its tracked files differ from it."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *argv], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each iperf3 run (4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the median over them (3)")
    parser.add_argument("--levels", default="none,medium", help="monitor aggregation levels (none,medium)")
    parser.add_argument("--before", type=Path, help="an older checkout whose agent is measured in turns")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    args = parser.parse_args()
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    trees = {"this": HERE.parents[1]} | ({"before": args.before.resolve()} if args.before else {})

    runs: dict[tuple[str, str, str], list[Sample]] = {}
    with bpf_stats(), Lab(f"c{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        for round_ in range(args.rounds):
            for level in levels:
                order = list(trees.items())
                if round_ % 2:
                    order.reverse()  # whoever goes second meets what the first left behind: take turns
                for label, tree in order:
                    for name, sample in measure(lab, tree, level, args.seconds).items():
                        runs.setdefault((label, level, name), []).append(sample)

    def cell(label: str, level: str, name: str, field: str) -> float:
        return statistics.median(sample[field] for sample in runs[(label, level, name)])

    lines = [
        "| level | traffic | checkout | ns per run | runs/s | CPU | traffic's throughput |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        for name, (_, unit) in TRAFFIC.items():
            for label in trees:
                throughput = cell(label, level, name, "throughput")
                shown = f"{throughput:.2f}" if unit == "Gbit/s" else f"{throughput:,.0f}"
                lines.append(
                    f"| {level} | {name} | {label} | {cell(label, level, name, 'ns_per_run'):,.0f} "
                    f"| {cell(label, level, name, 'runs_per_s'):,.0f} | {cell(label, level, name, 'cpu_share'):.1%} "
                    f"| {shown} {unit} |"
                )
    checkouts = ", ".join(f"{label} = {commit_of(tree)}" for label, tree in trees.items())
    lines.append("")
    lines.append(
        f"Medians of {args.rounds} rounds of {args.seconds:g} s; one-node lab, pods client → server, iperf3. A run is "
        "one entry program's run on one packet, its tail calls included; CPU is the share of one CPU they took. "
        f"Checkouts: {checkouts}."
    )
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "sudo .venv/bin/python bench/bpf_cost.py " + " ".join(sys.argv[1:])
        update_results(
            "Datapath cost per packet",
            f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\n{report}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
