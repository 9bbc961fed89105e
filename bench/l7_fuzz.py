"""Fuzz the L7 parsers with a million mutated messages each and report messages/s and that nothing escaped.

    .venv/bin/python bench/l7_fuzz.py [--messages 1000000] [--seed 14]

The same seed gives the same messages (observer/l7/fuzzing.py), so an exception found here is reproduced by
rerunning with the printed seed; the exit status is 1 when any parser raised.
"""

from __future__ import annotations

import argparse
import sys
import time

from flowscope.observer.l7.fuzzing import Target, mutated, targets


def fuzz(target: Target, messages: int, seed: int) -> tuple[float, int]:
    """Parse rate (messages/s, mutation excluded) and the number of messages that raised."""
    inputs = list(mutated(target, messages, seed))
    escaped = 0
    started = time.perf_counter()
    for message in inputs:
        try:
            target.parse(message)
        except Exception as exc:
            escaped += 1
            if escaped <= 3:
                print(f"  {target.name}: {exc!r} on {message!r}", file=sys.stderr)
    return messages / (time.perf_counter() - started), escaped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="mutated messages per parser")
    parser.add_argument("--seed", type=int, default=14, help="seed of the mutations")
    args = parser.parse_args()
    failed = False
    for target in targets():
        rate, escaped = fuzz(target, args.messages, args.seed)
        failed = failed or escaped > 0
        verdict = "no exception escaped" if not escaped else f"{escaped} EXCEPTIONS escaped"
        print(f"{target.name:8} {args.messages:>9,} messages  {rate:>9,.0f} messages/s  {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
