"""The synthetic cases of bench/relay_bench.py: the relay's own ceiling in front of synthetic agents (three, or
`--nodes` many), this checkout's relay beside `--before`'s, the two alternating within each setting.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from relay_agents import HISTORY_STEP_NS, SYNTHETIC_NODES, sample_flows, synthetic_agents, time_field
from relay_runner import LAST, read_flows, relay_process, synthetic_follow, synthetic_last

from common import cpu_seconds
from flowscope.api.observer import observer_pb2

T = TypeVar("T")
RATES = (10, 100, 1_000, 10_000, 50_000)  # flows per second, all nodes together


def alternating(codes: dict[str, T], turn: int) -> list[tuple[str, T]]:
    """The versions in the order of this round: each goes first every other round, so neither is always the one
    that runs against agents just started, or right after the other."""
    items = list(codes.items())
    return items if turn % 2 == 0 else items[::-1]


def relay_modules(folder: str) -> tuple[Any, Any]:
    """wire and merge of another relay/ folder ("" for this checkout's), loaded beside this checkout's."""
    import importlib

    import flowscope.relay

    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if name.startswith("flowscope.relay.")}
    path = list(flowscope.relay.__path__)
    try:
        if folder:
            flowscope.relay.__path__[:] = [folder]
        wire = importlib.import_module("flowscope.relay.wire")
        merge = importlib.import_module("flowscope.relay.merge")
        return wire, merge
    finally:
        for name in [name for name in sys.modules if name.startswith("flowscope.relay.")]:
            del sys.modules[name]
        sys.modules.update(ours)
        flowscope.relay.__path__[:] = path


def merge_cost(wire: Any, merge: Any, per_node: int = LAST) -> float:
    """CPU µs per flow of the relay's own work on `--last` of three nodes, in one thread, no gRPC: each response
    scanned and pushed as a node stream does (round robin over the nodes), taken as the client handler does."""
    streams, base = {}, time.time_ns() - 60_000_000_000
    for index, node in enumerate(SYNTHETIC_NODES):
        flows = sample_flows(node)
        start = base + index * 1_000
        streams[node] = [flows[k % 16] + time_field(start + k * HISTORY_STEP_NS) for k in range(per_node)]
    merger = merge.Merger(relay_name="relay")
    for node in SYNTHETIC_NODES:
        merger.open(node, history=True, ends=True)
    taken = 0
    started = time.thread_time()  # CPU time: the figure does not depend on what else the machine runs
    for k in range(per_node):
        for node, stream in streams.items():
            raw = stream[k]
            scanned = wire.scan(raw)
            merger.push(node, scanned.time_ns, raw)
        if k % 64 == 63:
            while batch := merger.take(0):
                taken += len(batch)
    for node in SYNTHETIC_NODES:
        merger.close(node)
    merger.finish()
    while (batch := merger.take(0)) is not None:
        taken += len(batch)
    elapsed = time.thread_time() - started
    assert taken == per_node * len(SYNTHETIC_NODES), taken
    return elapsed / taken * 1e6


def measure_merge_cost(before: str, rounds: int) -> dict[str, list[float]]:
    """merge_cost of this checkout's relay and `before`'s, alternating in this one process."""
    codes = {"after": relay_modules("")} | ({"before": relay_modules(before)} if before else {})
    results: dict[str, list[float]] = {}
    for turn in range(max(3, rounds)):
        for version, (wire, merge) in alternating(codes, turn):
            results.setdefault(version, []).append(merge_cost(wire, merge))
            print("merge in-process", version, f"{results[version][-1]:.1f} µs/flow", flush=True)
    return results


def measure_synthetic(
    seconds: float, before: str = "", rounds: int = 2
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every synthetic figure for this checkout's relay ("after") and, with `before`, another relay/ folder's,
    the two alternating within each setting so a slow minute of the machine hurts both alike."""
    import tempfile

    codes = {"after": ""} | ({"before": before} if before else {})
    results: dict[str, dict[str, list[dict[str, float]]]] = {}

    def record(setting: str, version: str, figures: dict[str, float]) -> None:
        results.setdefault(setting, {}).setdefault(version, []).append(figures)
        print(setting, version, {k: round(v, 2) for k, v in figures.items()}, flush=True)

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp:
        folder = Path(tmp)
        with synthetic_agents(folder, LAST, 0) as peers:
            for turn in range(rounds):
                for version, code in alternating(codes, turn):
                    with relay_process(peers, code) as (address, pid):
                        record("last", version, synthetic_last(address, pid))
                        record("follow", version, synthetic_follow(address, pid, seconds))
        for rate in RATES:
            with synthetic_agents(folder, 0, rate / len(SYNTHETIC_NODES)) as peers:
                for turn in range(rounds):
                    for version, code in alternating(codes, turn):
                        with relay_process(peers, code) as (address, pid):
                            record(f"rate {rate}", version, synthetic_follow(address, pid, max(3.0, seconds / 2)))
    return results


MANY_LAST = 2_000  # `--last` per node in front of many nodes (50 nodes: 100,000 flows)
AGENTS_PER_PROCESS = 10


def at_rest(peers: list[str], code: str) -> tuple[int, float]:
    """RSS (bytes) and CPU (seconds a second) of a relay connected to `peers` and asked nothing."""
    from common import rss_bytes

    with relay_process(peers, code) as (_, pid):
        time.sleep(3.0)  # connections made, first pings answered
        cpu0 = cpu_seconds(pid)
        time.sleep(3.0)
        return rss_bytes(pid), (cpu_seconds(pid) - cpu0) / 3.0


def many_figures(peers: list[str], code: str, seconds: float) -> dict[str, float]:
    """One relay's figures in front of all of `peers`: at rest (against 3 of them), `--last`, follow."""
    from common import rss_bytes

    count = len(peers)
    few_rss, few_cpu = at_rest(peers[:3], code)
    many_rss, many_cpu = at_rest(peers, code)
    figures = {
        "RSS (MiB)": many_rss / 2**20,
        "RSS per node beyond 3 (MiB)": (many_rss - few_rss) / (count - 3) / 2**20,
        "CPU at rest per node beyond 3 (ms/s)": (many_cpu - few_cpu) / (count - 3) * 1e3,
    }
    with relay_process(peers, code) as (address, pid):
        time.sleep(2.0)  # every node connected before the request
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        flows = sum(
            1 for raw in read_flows(address, observer_pb2.GetFlowsRequest(number=MANY_LAST)) if raw[:1] == b"\x0a"
        )
        figures[f"--last {MANY_LAST}: flows"] = flows
        figures[f"--last {MANY_LAST}: seconds"] = time.perf_counter() - start
        figures[f"--last {MANY_LAST}: relay CPU per flow (µs)"] = (cpu_seconds(pid) - cpu0) / flows * 1e6
        follow = synthetic_follow(address, pid, seconds)
        figures["follow: RSS after (MiB)"] = rss_bytes(pid) / 2**20
    figures["follow: merged flows/s"] = follow["flows_per_s"]
    figures["follow: delivered flows/s"] = follow["delivered_per_s"]
    figures["follow: relay CPU per flow (µs)"] = follow["relay_cpu_us_per_flow"]
    return figures


def paced_figures(address: str, pid: int, rate: int, nodes: int, seconds: float) -> dict[str, float]:
    """Follow through a relay whose `nodes` send `rate` flows a second in all: latency, delivery, and relay CPU
    per flow and per node a second (at a low rate mostly what each node costs, flows or not: the same relay's
    CPU asked nothing is measured first)."""
    time.sleep(2.0)  # every node connected before the request
    cpu0 = cpu_seconds(pid)
    time.sleep(3.0)
    idle = (cpu_seconds(pid) - cpu0) / 3.0
    follow = synthetic_follow(address, pid, seconds)
    busy = follow["relay_cpu_us_per_flow"] * follow["flows_per_s"] / 1e6  # CPU seconds a second
    return {
        f"follow at {rate:,} flows/s in all: p50 (ms)": follow["p50_ms"],
        f"follow at {rate:,} flows/s in all: p99 (ms)": follow["p99_ms"],
        f"follow at {rate:,} flows/s in all: max (ms)": follow["max_ms"],
        f"follow at {rate:,} flows/s in all: delivered flows/s": follow["delivered_per_s"],
        f"follow at {rate:,} flows/s in all: relay CPU per flow (µs)": follow["relay_cpu_us_per_flow"],
        f"follow at {rate:,} flows/s in all: relay CPU per node (ms/s)": busy / nodes * 1e3,
        f"the same relay asked nothing: CPU per node (ms/s), {nodes} nodes": idle / nodes * 1e3,
    }


def measure_many(
    count: int, seconds: float, before: str = "", rounds: int = 2, rates: Sequence[int] = (), paced_only: bool = False
) -> str:
    """A relay in front of `count` synthetic nodes: `--last` across them, follow as fast as they send, and what
    each node costs the relay at rest (RSS and CPU, against a relay of 3 nodes), then follow latency with the
    nodes sending `rates` flows a second in all, beside `before`'s relay (the two alternating)."""
    import tempfile

    codes = {"after": ""} | ({"before": before} if before else {})
    names = [f"node{k + 1}" for k in range(count)]
    rows: dict[str, dict[str, list[float]]] = {}

    def record(version: str, figures: dict[str, float]) -> None:
        for figure, value in figures.items():
            rows.setdefault(figure, {}).setdefault(version, []).append(value)
            print(f"{count} nodes", version, figure, round(value, 2), flush=True)

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp:
        if not paced_only:
            with synthetic_agents(Path(tmp), MANY_LAST, 0, names, AGENTS_PER_PROCESS) as peers:
                for turn in range(rounds):
                    for version, code in alternating(codes, turn):
                        record(version, many_figures(peers, code, seconds))
        for rate in rates:
            with synthetic_agents(Path(tmp), 0, rate / count, names, AGENTS_PER_PROCESS) as peers:
                for turn in range(rounds):
                    for version, code in alternating(codes, turn):
                        with relay_process(peers, code) as (address, pid):
                            record(version, paced_figures(address, pid, rate, count, seconds))
    versions = list(codes)[::-1]
    table = "\n".join(
        f"| {figure} | " + " | ".join(f"{statistics.median(values[v]):,.2f}" for v in versions) + " |"
        for figure, values in rows.items()
    )
    return f"""A relay in front of {count} synthetic nodes ({AGENTS_PER_PROCESS} agents a process), medians of {rounds}:

| figure | {" | ".join(versions)} |
|---|{"---|" * len(versions)}
{table}"""


def profile_relay(seconds: float, folder: Path, code: str = "") -> None:
    """A relay (code: another relay/ folder), every thread under cProfile, through `--last 20000`
    (folder/last.prof) and, in a relay of its own, a follow run as fast as it goes (folder/follow.prof)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fs-rbench-") as tmp, synthetic_agents(Path(tmp), LAST, 0) as peers:
        with relay_process(peers, code, str(folder / "last.prof")) as (address, pid):
            print("last", synthetic_last(address, pid), flush=True)
        with relay_process(peers, code, str(folder / "follow.prof")) as (address, pid):
            print("follow", synthetic_follow(address, pid, seconds), flush=True)
