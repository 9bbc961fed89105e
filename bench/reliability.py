"""The long versions of the reliability suite (tests/reliability/), printing figures.

    .venv/bin/python bench/reliability.py [--cases 1000000] [--followers 200] [--seconds 30] [--rate 100] [--write]

- Decoder fuzz: --cases seeded random and mutated records through the real decoder (tests/reliability/
  decoder_fuzz.py, the engine test_decoder_fuzz.py runs with 20,000): time, cases per second, and how many
  raised or decoded something their bytes contradict (must be 0).
- Many followers: a real agent server in this process on a real flow ring (tests/reliability/reliability_nodes.py)
  and the real relay in front of it; --followers follow clients, half on the agent's socket and half through
  the relay, while flows are written at --rate per second for --seconds. Every follower's count of flows
  received against the count written, the LostEvents they were told of, and this process's resident memory
  (agent and relay) before the followers, at the end of the run, and after they are gone.
With --write the figures replace the "Reliability, long runs" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path[1:1] = [str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]  # records, waiting, the suite's nodes

from decoder_fuzz import Fuzzer  # noqa: E402
from reliability_nodes import Node, Reader, rss_bytes  # noqa: E402
from waiting import eventually, wait_for  # noqa: E402

from common import update_results  # noqa: E402

SEED = 20_260_610
_MIB = 1 << 20
DRAIN_S = 60.0  # how long the followers may take to receive what was written, after the writing ends
_BATCH = 10  # flows per write: the rate is kept by writing _BATCH flows every _BATCH / rate seconds


def fuzz(cases: int) -> list[tuple[str, str]]:
    outcome = Fuzzer(SEED).run(cases)
    for case, what, raw in outcome.failures[:5]:
        print(f"  case {case}: {what}\n    record {raw}", file=sys.stderr)
    return [
        ("decoder fuzz, seeded random and mutated records", f"{outcome.cases:,} cases in {outcome.seconds:.1f} s"),
        ("decoder fuzz, cases per second", f"{outcome.cases / outcome.seconds:,.0f}"),
        ("decoder fuzz, exceptions or contradicted fields", f"**{len(outcome.failures)}**"),
    ]


def followers(count: int, seconds: float, rate: int) -> list[tuple[str, str]]:
    """`count` followers, half on the agent and half through the relay, for `seconds` of flows at `rate`/s."""
    channels: list[grpc.Channel] = []
    with Node("rel-bench") as node, node.relay() as relay:
        gc.collect()
        before = rss_bytes()
        agent = grpc.insecure_channel(node.target)
        through = grpc.insecure_channel(f"localhost:{relay.port}")
        channels += [agent, through]
        direct = count // 2
        readers = [Reader(agent) for _ in range(direct)] + [Reader(through) for _ in range(count - direct)]
        try:
            wait_for(lambda: node.server.streams.open == count, timeout=60)
            wait_for(lambda: relay.streams.open == count - direct, timeout=60)
            written, start, cpu = 0, time.monotonic(), time.process_time()
            while (elapsed := time.monotonic() - start) < seconds:
                node.write(_BATCH)
                written += _BATCH
                time.sleep(max(0.0, written / rate - (time.monotonic() - start)))  # the traffic's pace
            node.mark()
            written += 1
            everyone = eventually(lambda: all(r.marked.is_set() for r in readers), timeout=DRAIN_S)
            drained = time.monotonic() - start - elapsed
            cpu = time.process_time() - cpu
            during = rss_bytes()
            errors = [r.error for r in readers if r.error is not None]
            got = {"agent": [r.flows for r in readers[:direct]], "relay": [r.flows for r in readers[direct:]]}
            lost = sum(r.lost for r in readers)
        finally:
            for reader in readers:
                reader.close()
        wait_for(lambda: node.server.streams.open == 0 and relay.streams.open == 0, timeout=30)
    for channel in channels:
        channel.close()
    readers.clear()
    gc.collect()
    after = rss_bytes()
    rows = [
        (
            f"{count} followers ({direct} on the agent, {count - direct} through the relay), flows written",
            f"{written:,} in {elapsed:.1f} s ({written / elapsed:,.0f}/s); the last reached every follower "
            + (f"{drained:.2f} s after it was written" if everyone else f"**not within {DRAIN_S:.0f} s**"),
        )
    ]
    for where, counts in got.items():
        complete = sum(c == written for c in counts)
        rows.append(
            (
                f"flows received per follower, {where} (min / median / max)",
                f"{min(counts):,} / {statistics.median(counts):,.0f} / {max(counts):,}; "
                f"**{complete} of {len(counts)}** got all {written:,}",
            )
        )
    rows += [
        ("LostEvents told to the followers, stream errors", f"{lost:,}, {len(errors)}"),
        (
            "CPU of the process (agent, relay and the followers' clients) while writing and draining",
            f"{cpu:.1f} s in {elapsed + drained:.1f} s ({cpu / (elapsed + drained):.2f} cores)",
        ),
        (
            "resident memory (agent and relay, one process): before / end of run / followers gone",
            f"{before / _MIB:.0f} / {during / _MIB:.0f} / {after / _MIB:.0f} MiB",
        ),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=100, help="flows written per second")
    parser.add_argument("--write", action="store_true", help="replace the section of bench/RESULTS.md")
    args = parser.parse_args()
    rows = fuzz(args.cases)
    for row in rows:
        print(*row, sep=": ")
    more = followers(args.followers, args.seconds, args.rate)
    for row in more:
        print(*row, sep=": ")
    rows += more
    if args.write:
        tree = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
        command = " ".join(["bench/reliability.py", *sys.argv[1:]]).replace(" --write", "")
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        update_results(
            "Reliability, long runs",
            f"Command: `.venv/bin/python {command} --write` (tree {tree}, {date.today()}); the agent's server and "
            "the relay in the benchmark's process on 2 cores shared with other people's test runs.\n\n"
            f"| figure | value |\n|---|---|\n{table}\n",
        )
    failed = rows[2][1] != "**0**"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
