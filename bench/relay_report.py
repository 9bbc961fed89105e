"""The tables of bench/relay_bench.py: the lab's figures, and the synthetic figures before beside after."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable

from relay_cases import RATES
from relay_runner import PROJECT


def latency_rows(latency: dict[str, float]) -> list[tuple[str, str]]:
    rate = f"{latency['rate']:,.0f} flows/s"
    return [
        (
            f"added latency of the merged follow stream at {rate}, packet timestamp to client receipt, p50 / p99",
            f"{latency['relay_p50']:.1f} ms / {latency['relay_p99']:.1f} ms (max {latency['relay_max']:.1f} ms, "
            f"{latency['flows']:,.0f} flows; load {latency['load']:.1f})",
        ),
        (
            f"the same straight from one agent at {rate} (the agent's own pipeline), p50 / p99",
            f"{latency['agent_p50']:.1f} ms / {latency['agent_p99']:.1f} ms",
        ),
        (
            f"flows out of time order in the merged follow stream at {rate} (in one agent's own stream)",
            f"{latency['out_of_order']:,.0f}, by up to {latency['out_of_order_max']:.1f} ms "
            f"({latency['agent_out_of_order']:,.0f})",
        ),
    ]


def report(latencies: list[dict[str, float]], last: dict[str, float], synthetic: dict[str, float], args: str) -> str:
    rows = [
        *(row for latency in latencies for row in latency_rows(latency)),
        (
            f"`--last 20000` over three nodes through the relay (gRPC client, {last['responses']:,.0f} responses)",
            f"{last['relay_s']:.2f} s",
        ),
        (
            f"the same from the three agents in parallel, unmerged ({last['direct_flows']:,.0f} flows)",
            f"{last['direct_s']:.2f} s",
        ),
        ("`flowscope observe --last 20000 -o jsonpb > /dev/null` through the relay", f"{last['cli_s']:.2f} s"),
        (
            "relay throughput, merging `--last 20000` of three nodes",
            f"{last['flows_per_s']:,.0f} flows/s (load {last['load']:.1f})",
        ),
        (
            "relay throughput, follow mode, three synthetic agents sending as fast as they can",
            f"{synthetic['flows_per_s']:,.0f} flows/s merged, {synthetic['relay_cpu_us_per_flow']:.0f} µs of relay "
            f"CPU per flow ({synthetic['delivered_per_s']:,.0f}/s read by the client, the rest LostEvents; "
            f"load {synthetic['load']:.1f})",
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    version = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=PROJECT, check=False
    ).stdout.strip()
    return f"""Measured with `.venv/bin/python bench/relay_bench.py {args}` (tree {version}) on a three-node lab: real
agents, the lab's relay in the root namespace reaching them over their unix sockets, 2 cores shared by
everything, also with other people's test runs: the load figures are the 1-minute load average after each part.

| figure | value |
|---|---|
{table}

Hubble's relay holds every flow up to 1 s (`sort-buffer-drain-timeout`); flowscope's holds a flow only until
every node has passed its time, and at most 50 ms (`--sort-window`)."""


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def synthetic_report(
    results: dict[str, dict[str, list[dict[str, float]]]], merge: dict[str, list[float]], used: str
) -> str:
    """The synthetic figures as a table, this checkout's relay beside the `--before` one when it ran."""
    versions = [v for v in ("before", "after") if v in results["last"]]
    head = " | ".join(versions)
    rows = [
        "| the relay's own work on `--last 20000` of 3 nodes (scan, merge, take; one thread, no gRPC), per flow | "
        + " | ".join(f"{statistics.median(merge[v]):.1f} µs" for v in versions)
        + " |"
    ]

    def row(name: str, setting: str, show: Callable[[list[dict[str, float]]], str]) -> None:
        rows.append(f"| {name} | " + " | ".join(show(results[setting][v]) for v in versions) + " |")

    row(
        "`--last 20000`, 3 nodes (60,000 flows): seconds to the last",
        "last",
        lambda r: f"{_median(r, 'seconds'):.2f} s",
    )
    row(
        "the same: merged flows/s, relay CPU per flow",
        "last",
        lambda r: f"{_median(r, 'flows_per_s'):,.0f}/s, {_median(r, 'cpu_us_per_flow'):.0f} µs",
    )
    row(
        "follow, agents as fast as they can: merged flows/s (read by the client), relay CPU per flow",
        "follow",
        lambda r: (
            f"{_median(r, 'flows_per_s'):,.0f}/s ({_median(r, 'delivered_per_s'):,.0f}/s), "
            f"{_median(r, 'relay_cpu_us_per_flow'):.0f} µs"
        ),
    )
    for rate in RATES:
        row(
            f"follow at {rate:,} flows/s: flow time to receipt p50 / p99 (max); relay CPU per flow",
            f"rate {rate}",
            lambda r: (
                f"{_median(r, 'p50_ms'):.1f} / {_median(r, 'p99_ms'):.1f} ms ({_median(r, 'max_ms'):.0f}); "
                f"{_median(r, 'relay_cpu_us_per_flow'):.0f} µs"
                + (f", {sum(x['lost'] for x in r):,.0f} lost" if any(x["lost"] for x in r) else "")
            ),
        )
    table = "\n".join(rows)
    return f"""Command: `.venv/bin/python bench/relay_bench.py {used}`; medians of the rounds, before and after
alternating.

| figure | {head} |
|---|{"---|" * len(versions)}
{table}"""
