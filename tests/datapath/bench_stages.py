"""Per-packet cost of the datapath in ns, measured by the kernel with BPF_PROG_TEST_RUN (run by hand: needs root).

    .venv/bin/python tests/datapath/bench_stages.py [--before /path/to/older/checkout] [--alternations 5]

Each figure is the median over rounds of the kernel's mean time per run of one program on one packet of an
established TCP connection (repeat=2000, the ring drained between rounds), at monitor aggregation none and
medium, and at medium with an ingress policy that allows the connection. With --before, the same packet also
runs through an older checkout's datapath (its own loader, in a subprocess), in turns with this one so that both
meet the same load; each figure is then the median over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
ROUNDS, REPEAT = 15, 2000
PROGRAMS = ("from_container", "to_container", "from_netdev")


def measure(tree: Path) -> dict[str, float]:
    """The figures for the checkout at `tree`, importing its own observer package."""
    sys.path[:0] = [str(tree), str(tree / "tests" / "datapath")]
    from dp_packets import ACK, ETH_P_IP, IPPROTO_TCP, SYN, eth, ipv4, tcp

    from flowscope.observer.datapath import Datapath, DatapathConfig
    from flowscope.observer.datapath.testrun import prog_test_run

    pod, peer = "192.0.2.1", "192.0.2.2"
    out_syn = eth(ETH_P_IP, ipv4(pod, peer, IPPROTO_TCP, tcp(40000, 80, SYN)))
    out_ack = eth(ETH_P_IP, ipv4(pod, peer, IPPROTO_TCP, tcp(40000, 80, ACK, bytes(10))))
    in_syn = eth(ETH_P_IP, ipv4(peer, pod, IPPROTO_TCP, tcp(40001, 80, SYN)))
    in_ack = eth(ETH_P_IP, ipv4(peer, pod, IPPROTO_TCP, tcp(40001, 80, ACK, bytes(10))))
    packets = {"from_container": (out_syn, out_ack), "to_container": (in_syn, in_ack), "from_netdev": (in_syn, in_ack)}
    figures: dict[str, float] = {}
    with Datapath(DatapathConfig(ring_buffer_pages=4096)) as dp:
        dp.set_endpoint(1, 7, 5555)
        reader = dp.reader()
        settings: list[tuple[str, dict[str, int]]] = [("none", {"aggregation": 0})]
        if hasattr(dp, "update_config"):  # a checkout with monitor aggregation and policy
            settings += [("medium", {"aggregation": 3, "report_flags": 7})]
            settings += [("medium+policy", {"aggregation": 3, "report_flags": 7, "policy_rev": 1})]
            from flowscope.observer.datapath.policymaps import INGRESS, PolicyKey, PolicyValue

            dp.policy.write_generation(1, {PolicyKey(5555, INGRESS, 0, IPPROTO_TCP, 80): PolicyValue(1)}, {5555: 1})
        for name, config in settings:
            if hasattr(dp, "update_config"):
                dp.update_config(**config)
                dp.conntrack.clear()
            for program in PROGRAMS:
                fd = dp.program_fd(program)
                first, steady = packets[program]
                prog_test_run(fd, first)  # the connection exists from here on
                runs = []
                for _ in range(ROUNDS):
                    runs.append(prog_test_run(fd, steady, repeat=REPEAT).duration_ns)
                    reader.read_batch(0)
                figures[f"{name} {program}"] = statistics.median(runs)
        figures["lost"] = sum(dp.lost_counts())
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="an older checkout to measure beside this one")
    parser.add_argument("--tree", type=Path, default=HERE.parents[2], help=argparse.SUPPRESS)
    parser.add_argument("--alternations", type=int, default=5, help="runs of each checkout, in turns (5)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.tree)))
        return 0
    trees = {"after": HERE.parents[2]} | ({"before": args.before} if args.before else {})
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    for _ in range(args.alternations):  # before and after in turns, so both meet the same load
        for label, tree in trees.items():
            done = subprocess.run(
                [sys.executable, str(HERE), "--tree", str(tree), "--json"], capture_output=True, text=True, check=True
            )
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'ns/packet (median of runs)':<30}" + "".join(f"{label:>10}" for label in trees))
    for key in runs["after"][0]:
        cells = [statistics.median(r.get(key, float("nan")) for r in runs[label]) for label in trees]
        print(f"{key:<30}" + "".join(f"{cell:>10.0f}" for cell in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
