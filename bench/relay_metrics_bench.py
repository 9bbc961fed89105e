"""What `flowscope relay --metrics-address` costs: the relay's CPU per flow with metrics off and on, side by side.

The relay runs in a process of its own in front of the three synthetic agents of bench/relay_bench.py (this
checkout's relay/, and with `--before FOLDER` another checkout's relay/ folder too), once per variant in every
round, the variants taking turns going first. With metrics on, a scraper reads /metrics every `--scrape-every`
seconds while the relay is measured (what a Prometheus costs it, counted in). Two figures per run: `--last 20000`
of each node (60,000 flows, as fast as the relay goes) and a follow stream at `--rate` flows a second in all.

    .venv/bin/python bench/relay_metrics_bench.py --rounds 3 --before /tmp/before/relay
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relay_agents import SYNTHETIC_NODES, synthetic_agents
from relay_runner import LAST, relay_process, synthetic_follow, synthetic_last

from flowscope.lab.relay import free_address

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def scraping(target: str, every_s: float) -> Iterator[list[int]]:
    """Read http://target/metrics every `every_s` seconds until the block ends; yields the sizes read."""
    sizes: list[int] = []
    stop = threading.Event()

    def scrape() -> None:
        while True:
            with DIRECT.open(f"http://{target}/metrics", timeout=5) as reply:
                sizes.append(len(reply.read()))
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()


def measure(variant: str, code: str, peers: list[str], case: str, args: argparse.Namespace) -> dict[str, float]:
    """One run of the relay of `variant` ("off", "on", "before") in front of `peers`."""
    target = free_address().replace("localhost", "127.0.0.1") if variant == "on" else ""
    scraper = scraping(target, args.scrape_every) if target else _nothing()
    with relay_process(peers, code, metrics=target) as (address, pid), scraper as sizes:
        figures = synthetic_last(address, pid) if case == "last" else synthetic_follow(address, pid, args.seconds)
    if target:
        assert sizes, "the relay's /metrics was never read"
        figures["scrapes"] = len(sizes)
    return figures


@contextmanager
def _nothing() -> Iterator[list[int]]:
    yield []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant per case (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a follow run (5)")
    parser.add_argument("--rate", type=float, default=10_000, help="follow: flows a second, all nodes (10000)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes (1)")
    parser.add_argument("--before", default="", help="another checkout's relay/ folder, measured beside (off)")
    args = parser.parse_args()
    variants = {"off": "", "on": ""} | ({"before": args.before} if args.before else {})
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="fs-rmbench-") as tmp:
        for case, history, rate in (("last", LAST, 0.0), ("follow", 0, args.rate / len(SYNTHETIC_NODES))):
            with synthetic_agents(Path(tmp), history, rate) as peers:
                for turn in range(args.rounds):
                    names = list(variants)
                    order = names[turn % len(names) :] + names[: turn % len(names)]
                    for variant in order:
                        figures = measure(variant, variants[variant], peers, case, args)
                        key = "cpu_us_per_flow" if case == "last" else "relay_cpu_us_per_flow"
                        results.setdefault((case, variant), []).append(figures[key])
                        print(case, variant, {k: round(v, 2) for k, v in figures.items()}, flush=True)
    print(
        f"\nrelay CPU per flow, µs (median of {args.rounds}; follow at {args.rate:g} flows/s, scraped every "
        f"{args.scrape_every:g} s when on)"
    )
    for case in ("last", "follow"):
        row = "  ".join(f"{variant} {statistics.median(results[(case, variant)]):.2f}" for variant in variants)
        print(f"{case:7} {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
