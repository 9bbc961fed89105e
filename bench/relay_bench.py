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

A relay in front of many synthetic nodes, alone (`--nodes 50`): `--last`, follow flat out, and at rest; with
`--paced-only --node-rates 200` only the low rate, where what a node costs the relay, flows or not, shows (CPU
per flow and per node a second). `--before DIR` (another checkout's relay/ folder) runs beside this one.

The parts: relay_lab_cases.py (the lab), relay_agents.py (synthetic agents), relay_runner.py (the relay's
process and the client reading it), relay_cases.py (the synthetic cases), relay_report.py (the tables).

Set FLOWSCOPE_RELAY_TEST_AGENT to run another agent build (see tests/relay/relay_lab.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from relay_cases import measure_many, measure_merge_cost, measure_synthetic, profile_relay
from relay_lab_cases import AGENT, fill, measure_last, measure_latency
from relay_report import report, synthetic_report
from relay_runner import LAST

from common import update_results
from flowscope.lab import Lab


def main() -> int:
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
