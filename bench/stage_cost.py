"""What one packet of an established connection costs the datapath, in ns, this checkout against another.

    .venv/bin/python bench/stage_cost.py [--before CHECKOUT] [--pairs 400] [--repeat 400]

The kernel runs an entry program (BPF_PROG_TEST_RUN, with the tail calls it makes) `repeat` times on a packet of
an established TCP connection and reports the mean time per run; that, for each entry program at monitor
aggregation none and medium, and at medium with an ingress policy allowing the connection.

Why it interleaves so finely: this machine's CPUs change speed by up to two times from one half second to the
next (a shared host), so two programs measured a few seconds apart can differ by more than any change in them.
Each checkout loads its datapath in a worker process of its own (its own flowscope package and bpf/ sources);
the two workers then take turns on every run, a fraction of a millisecond each, so both meet the same speed of
the machine. A figure is the median over the runs, and "after/before" is the median of the ratios of
neighbouring runs, with a 90% bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from checkouts import import_checkout, link_tree

HERE = Path(__file__).resolve()
PROGRAMS = ("from_container", "to_container", "from_netdev")
SETTINGS: dict[str, dict[str, int]] = {
    "none": {"aggregation": 0},
    "medium": {"aggregation": 3, "report_flags": 7},
    "medium+policy": {"aggregation": 3, "report_flags": 7, "policy_rev": 1},
}
POD, PEER, IDENTITY = "192.0.2.1", "192.0.2.2", 5555


def serve(tree: Path) -> None:
    """The worker: load the checkout's datapath, then answer "<setting> <program> <repeat>" lines with the mean
    ns of that many runs, until stdin closes."""
    import_checkout(tree)
    sys.path[:0] = [str(tree / "tests" / "datapath")]
    from dp_packets import ACK, ETH_P_IP, IPPROTO_TCP, SYN, eth, ipv4, tcp

    from flowscope.observer.datapath import Datapath, DatapathConfig
    from flowscope.observer.datapath.policymaps import INGRESS, PolicyKey, PolicyValue
    from flowscope.observer.datapath.testrun import prog_test_run

    out = eth(ETH_P_IP, ipv4(POD, PEER, IPPROTO_TCP, tcp(40000, 80, SYN)))
    out_ack = eth(ETH_P_IP, ipv4(POD, PEER, IPPROTO_TCP, tcp(40000, 80, ACK, bytes(10))))
    into = eth(ETH_P_IP, ipv4(PEER, POD, IPPROTO_TCP, tcp(40001, 80, SYN)))
    into_ack = eth(ETH_P_IP, ipv4(PEER, POD, IPPROTO_TCP, tcp(40001, 80, ACK, bytes(10))))
    packets = {"from_container": (out, out_ack), "to_container": (into, into_ack), "from_netdev": (into, into_ack)}
    with Datapath(DatapathConfig(ring_buffer_pages=4096)) as dp:
        dp.set_endpoint(1, 7, IDENTITY)  # loopback, the test runs' device, is the endpoint
        dp.policy.write_generation(1, {PolicyKey(IDENTITY, INGRESS, 0, IPPROTO_TCP, 80): PolicyValue(1)}, {IDENTITY: 1})
        reader = dp.reader()
        current = ""
        print("ready", flush=True)
        for line in sys.stdin:
            setting, program, repeat = line.split()
            if setting != current:
                dp.update_config(**SETTINGS[setting])
                dp.conntrack.clear()
                for first, _ in packets.values():
                    prog_fd = dp.program_fd(next(p for p, pk in packets.items() if pk[0] == first))
                    prog_test_run(prog_fd, first)  # the connections exist from here on
                current = setting
            ns = prog_test_run(dp.program_fd(program), packets[program][1], repeat=int(repeat)).duration_ns
            reader.read_batch(0)  # at none every run is an event: keep the ring from filling
            print(ns, flush=True)
        print(json.dumps({"lost": sum(dp.lost_counts())}), flush=True)


class Worker:
    def __init__(self, tree: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", str(tree)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin: IO[str] = self.proc.stdin
        self.stdout: IO[str] = self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the worker for {tree} did not start")

    def run(self, setting: str, program: str, repeat: int) -> float:
        self.stdin.write(f"{setting} {program} {repeat}\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> dict[str, Any]:
        self.stdin.close()
        last = self.stdout.read().strip().splitlines()
        self.proc.wait(timeout=30)
        return json.loads(last[-1]) if last else {}


def interval(ratios: list[float], level: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = int((1 - level) / 2 * resamples)
    return medians[tail], medians[resamples - 1 - tail]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="an older checkout to measure beside this one")
    parser.add_argument("--pairs", type=int, default=400, help="runs of each checkout per figure, in turns (400)")
    parser.add_argument("--repeat", type=int, default=400, help="packets per run (400)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    trees = {"after": HERE.parents[1]} | ({"before": args.before.resolve()} if args.before else {})
    for tree in trees.values():
        link_tree(tree)  # refused in words before any worker starts, not by a worker that dies
    workers = {label: Worker(tree) for label, tree in trees.items()}
    try:
        header = f"{'ns per packet (median)':<32}" + "".join(f"{label:>9}" for label in trees)
        print(header + ("   after/before (90% interval)" if args.before else ""))
        for setting in SETTINGS:
            for program in PROGRAMS:
                runs: dict[str, list[float]] = {label: [] for label in trees}
                for i in range(args.pairs):
                    order = list(workers.items()) if i % 2 == 0 else list(reversed(workers.items()))
                    for label, worker in order:
                        runs[label].append(worker.run(setting, program, args.repeat))
                line = f"{setting + ' ' + program:<32}" + "".join(
                    f"{statistics.median(runs[label]):>9.0f}" for label in trees
                )
                if args.before:
                    ratios = [a / b for a, b in zip(runs["after"], runs["before"], strict=True) if b]
                    low, high = interval(ratios)
                    line += f"   {statistics.median(ratios):.3f} ({low:.3f}-{high:.3f})"
                print(line, flush=True)
    finally:
        lost = {label: worker.close().get("lost", "?") for label, worker in workers.items()}
    print(f"events lost in the ring: {lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
