"""How long one frame of `flowscope top` takes with 10,000 distinct rows (a busy cluster's connections).

    .venv/bin/python tests/top/bench_top_frame.py [ROWS] [WIDTH] [HEIGHT] [--checkout PATH]

Prints the median and worst of: the snapshot (rates of every row, under the table's lock), the order (sort of
every row), laying out the frame (the visible rows only), and rich rendering it to a terminal-sized console
(what Live.refresh does), for each sort key, and the median CPU time of a whole frame. A frame is built 4-10
times a second, so the total must stay well under 100 ms. Then the CPU time the table's ingest takes per flow.

--checkout PATH measures another checkout's top (a `git worktree add` with its own scripts/setup) with this
script: run it once with and once without, alternating, to compare before and after on a shared machine.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests" / "cli")]
if __name__ == "__main__" and "--checkout" in sys.argv:  # another checkout's flowscope, before anything imports it
    sys.path.insert(0, str(_ROOT / "bench"))
    from checkouts import import_checkout

    import_checkout(Path(sys.argv[sys.argv.index("--checkout") + 1]))
    del sys.argv[sys.argv.index("--checkout") : sys.argv.index("--checkout") + 2]

from rich.console import Console  # noqa: E402

from flowscope.cli.top import render  # noqa: E402
from flowscope.cli.top.controls import Controls  # noqa: E402
from flowscope.cli.top.state import FlowTable  # noqa: E402


def filled_table(rows: int, now: float) -> FlowTable:
    """A table with `rows` distinct connections, each seen a few times over the last 40 s."""
    import cli_samples

    from flowscope.api.flow import flow_pb2

    table = FlowTable(clock=lambda: now)
    flow = cli_samples.tcp_flow()
    for row in range(rows):
        flow.source.pod_name = f"client-{row}"
        flow.l4.TCP.destination_port = 1000 + row % 50
        flow.verdict = flow_pb2.DROPPED if row % 10 == 0 else flow_pb2.FORWARDED
        for repeat in range(1 + row % 3):
            when = now - (row * 7 + repeat * 13) % 40
            flow.time.seconds, flow.time.nanos = int(when), 0
            table.add_flow(flow)
    return table


def measure(rows: int, width: int, height: int, frames: int = 30) -> dict[str, dict[str, float]]:
    now = time.time()
    table = filled_table(rows, now)
    console = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system="truecolor")
    results: dict[str, dict[str, float]] = {}
    for sort_key in ("", "l", "d", "t"):  # "" keeps the default, rate over 10 s
        controls = Controls("", lambda text: None)
        controls.handle(sort_key)
        controls.page = render.visible_rows(height)
        timings: dict[str, list[float]] = {"snapshot+order": [], "layout": [], "render": [], "total": [], "cpu": []}
        for _ in range(frames):
            cpu = time.process_time()
            start = time.perf_counter()
            snapshot, order = controls.view(table.snapshot)
            viewed = time.perf_counter()
            frame = render.frame(snapshot, order, controls, "unix:///run/flowscope/hubble.sock", width, height)
            built = time.perf_counter()
            console.print(frame)
            done = time.perf_counter()
            console.file = io.StringIO()
            timings["snapshot+order"].append(viewed - start)
            timings["layout"].append(built - viewed)
            timings["render"].append(done - built)
            timings["total"].append(done - start)
            timings["cpu"].append(time.process_time() - cpu)
        results[controls.sort_label] = {
            f"{name} {stat}": fn(values) * 1000
            for name, values in timings.items()
            for stat, fn in (("median", statistics.median), ("max", max))
        }
    return results


def ingest_cost(rows: int, flows: int = 100_000) -> float:
    """CPU microseconds a flow costs the table (add_flow, the ingest thread's work), over `rows` rows."""
    import cli_samples

    now = time.time()
    table = FlowTable(clock=lambda: now)
    samples = []
    for row in range(rows):
        flow = cli_samples.tcp_flow()
        flow.source.pod_name = f"client-{row}"
        flow.time.seconds = int(now) - row % 30
        samples.append(flow)
    start = time.process_time()
    for index in range(flows):
        table.add_flow(samples[index % rows])
    return (time.process_time() - start) / flows * 1e6


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 160
    height = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    print(f"{rows:,} rows, {width}x{height} terminal ({render.visible_rows(height)} rows visible), ms per frame:")
    for sort_label, timing in measure(rows, width, height).items():
        parts = "  ".join(f"{name} {value:.2f}" for name, value in timing.items() if "median" in name)
        worst = timing["total max"]
        print(f"  sort {sort_label:<9} {parts}  (worst total {worst:.2f})")
    print(f"ingest: {ingest_cost(rows):.2f} us CPU a flow")


if __name__ == "__main__":
    main()
