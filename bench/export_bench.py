"""What flow logs cost the agent: its CPU per event with the file exporter off and on, under the same flood.

    .venv/bin/python bench/export_bench.py [--rate 100000] [--seconds 4] [--rounds 3] [--before CHECKOUT]

A one-node lab without background traffic; per round, one agent per variant in turn (alternating, so a slow
minute of this shared machine hurts every variant alike), at monitor aggregation none, while iperf3 sends
64-byte UDP datagrams client -> server paced so that the agent ingests about `--rate` events/s (bench/common.py's
flood). The agent's CPU time (user + system, all threads) is read around the flood and until its count
settles. The variants:

- off: no exporter
- all: --export-file, every flow exported, whole
- masked: --export-file --export-fieldmask with a handful of fields (time, verdict, IPs, l4, endpoints' names)
- none-selected: --export-file with an allowlist no flood flow matches (the cost of selecting alone)

Exported flows are the lines written (the file is large enough never to rotate, and removed after each run).
Reported: the median µs of agent CPU per event, and per exported flow what exporting adds to the `off` agent.

`--before CHECKOUT` (a `git worktree add` with its own scripts/setup) runs that checkout's agent too, as the
variants off-before and all-before in the same rounds: a change to ingest or the exporters side by side with
the code before it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import agent, alternating, events_per_packet, ingest, settle
from flowscope.lab import Lab

MASK = "time,verdict,IP,l4,source.namespace,source.pod_name,destination.namespace,destination.pod_name"
VARIANTS: dict[str, list[str]] = {
    "off": [],
    "all": ["--export-file", "{path}"],
    "masked": ["--export-file", "{path}", "--export-fieldmask", MASK],
    "none-selected": ["--export-file", "{path}", "--export-allowlist", '{"protocol":["sctp"]}'],
}
NO_ROTATION = ["--export-file-max-size-mb", "100000"]
BEFORE = "-before"  # a variant run by the --before checkout's agent


@dataclass(frozen=True)
class Run:
    variant: str
    events: int
    exported: int
    cpu_s: float

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / max(1, self.events) * 1e6


def lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def one_run(lab: Lab, folder: Path, variant: str, rate: float, seconds: float, before: Path | None = None) -> Run:
    path = folder / f"{variant}.log"
    args = [arg.replace("{path}", str(path)) for arg in VARIANTS[variant.removesuffix(BEFORE)]]
    command = [str(before / ".venv/bin/flowscope")] if before is not None and variant.endswith(BEFORE) else None
    with agent(lab, command=command, extra_args=[*args, *NO_ROTATION] if args else []) as pid:
        per_packet = events_per_packet(lab)  # also warms the agent up
        before = lines(path)
        cost = ingest(lab, pid, rate / per_packet, seconds, lambda: settle(lambda: lines(path), quiet_s=0.5))
    exported = lines(path) - before
    path.unlink(missing_ok=True)
    return Run(variant, cost.events, exported, cost.cpu_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100_000, help="events/s the agent should ingest")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout (set up): its agent off and exporting all too")
    args = parser.parse_args()
    variants = [*VARIANTS, *([f"off{BEFORE}", f"all{BEFORE}"] if args.before else [])]
    runs: list[Run] = []
    with Lab("xbench") as lab, tempfile.TemporaryDirectory(prefix="export-bench-") as folder:
        lab.up(traffic=False, agent=False)
        for round_number, variant in alternating(variants, args.rounds):
            run = one_run(lab, Path(folder), variant, args.rate, args.seconds, args.before)
            runs.append(run)
            print(
                f"round {round_number + 1} {variant:14} {run.events:>9,} events {run.exported:>9,} exported"
                f" {run.cpu_s:6.2f} s CPU {run.us_per_event:6.2f} us/event",
                flush=True,
            )
    per_event = {v: statistics.median(r.us_per_event for r in runs if r.variant == v) for v in variants}
    rates = {v: statistics.median(r.events / args.seconds for r in runs if r.variant == v) for v in variants}
    exported = {v: statistics.median(r.exported / max(1, r.events) for r in runs if r.variant == v) for v in variants}
    rows = [
        "| variant | events/s | exported/event | agent CPU µs/event | added µs/event | added µs/exported flow |",
        "|---|---|---|---|---|---|",
    ]
    for variant in variants:
        off = f"off{BEFORE}" if variant.endswith(BEFORE) else "off"
        added = per_event[variant] - per_event[off]
        per_flow = f"{added / exported[variant]:.2f}" if exported[variant] > 0 and variant != off else "—"
        rows.append(
            f"| {variant} | {rates[variant]:,.0f} | {exported[variant]:.2f} | {per_event[variant]:.2f} |"
            f" {'—' if variant == off else f'{added:+.2f}'} | {per_flow} |"
        )
    print("\n".join(rows))
    print("command:", " ".join([".venv/bin/python", "bench/export_bench.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
