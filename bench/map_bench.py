"""What `flowscope map` costs: redrawing once a second with 500 edges, and, measured beside it, receiving
(decoding) and counting 2,000 flows/s.

    .venv/bin/python bench/map_bench.py [EDGES] [WIDTH] [HEIGHT] [--checkout PATH]

Issue 17 asks that the redraw, the map's own work, stays under 5% of one CPU at its default rate (one frame a
second) with 500 edges, apart from decoding the stream, which is the same for every reader. Both are CPU time
of this process (the machine is shared: wall time would measure the neighbours), best of ROUNDS rounds:

- frame: the snapshot (every edge's rates, under the table's lock), the layout and drawing, and rich rendering
  it to a terminal-sized console (what Live.refresh does); the whole map (with the live screen's memory of
  where it drew each box, where the checkout has one) and the focus view of its busiest node.
- ingest: a GetFlowsResponse's bytes parsed into a message and counted by the MapTable (top's FlowTable rows
  plus the map's edges), and beside it by top's FlowTable alone, per flow and as a share of one CPU at 2,000
  flows/s; then flows from the world, each from an address of its own (no pod to remember its box by).

--checkout PATH measures another checkout's map (a `git worktree add` with its own scripts/setup) with this
script: run it with and without, alternating, to compare before and after on a shared machine.
"""

from __future__ import annotations

import inspect
import io
import random
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and "--checkout" in sys.argv:  # another checkout's flowscope, before anything imports it
    from checkouts import import_checkout

    import_checkout(Path(sys.argv[sys.argv.index("--checkout") + 1]))
    del sys.argv[sys.argv.index("--checkout") : sys.argv.index("--checkout") + 2]

from rich.console import Console

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.map.controls import MapControls
from flowscope.cli.map.frame import frame
from flowscope.cli.map.graph import MapTable
from flowscope.cli.observe.follow import parse
from flowscope.cli.top.state import FlowTable

ROUNDS = 5
FRAMES = 10  # per round
FLOWS = 20_000  # per round of ingest
RATE = 2_000  # flows/s the ingest share is given for
NAMESPACES = ("default", "web", "shop", "payments", "kube-system", "monitoring", "auth", "search")


def synthetic_flows(edges: int, now: float, count: int, world: bool = False) -> list[bytes]:
    """`count` GetFlowsResponse bytes over `edges` distinct edges (~100 workloads in 8 namespaces, a tenth of the
    edges with drops), spread over the last 40 s as the map's first read is; with `world`, each flow's source is
    the world at an address of its own instead."""
    randomness = random.Random(17)
    workloads = [(NAMESPACES[i % len(NAMESPACES)], f"app-{i}") for i in range(100)]
    pairs: set[tuple[int, int, int]] = set()
    while len(pairs) < edges:
        pairs.add((randomness.randrange(40), randomness.randrange(40, 100), randomness.choice((80, 443, 53, 9000))))
    ordered = sorted(pairs)
    responses = []
    for index in range(count):
        source, destination, port = ordered[index % len(ordered)]
        when = now - 40 + 40 * index / count
        flow = flow_pb2.Flow(
            verdict=flow_pb2.DROPPED if (index % len(ordered)) % 10 == 0 and index % 7 == 0 else flow_pb2.FORWARDED,
            IP=flow_pb2.IP(source=f"10.0.0.{source}", destination=f"10.0.1.{destination}"),
            Type=flow_pb2.L3_L4,
            node_name="node1",
        )
        flow.time.seconds, flow.time.nanos = int(when), int(when % 1 * 1e9)
        flow.l4.TCP.source_port, flow.l4.TCP.destination_port = 40000 + index % 20000, port
        for end, (namespace, app) in ((flow.source, workloads[source]), (flow.destination, workloads[destination])):
            end.namespace, end.pod_name, end.identity = (
                namespace,
                f"{app}-7d9f",
                1000 + workloads.index((namespace, app)),
            )
            end.labels.extend([f"k8s:app={app}", f"k8s:io.kubernetes.pod.namespace={namespace}"])
        if world:
            flow.source.Clear()
            flow.source.identity, flow.IP.source = 2, f"198.{18 + index // 65536}.{index // 256 % 256}.{index % 256}"
            flow.source.labels.append("reserved:world")
        responses.append(observer_pb2.GetFlowsResponse(flow=flow, node_name="node1").SerializeToString())
    return responses


def cpu_per_frame(table: MapTable, controls: MapControls, width: int, height: int) -> float:
    """Seconds of CPU one frame takes, best of ROUNDS rounds of FRAMES frames."""
    console = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system="truecolor")
    live: dict[str, Any] = {}
    if "memory" in inspect.signature(frame).parameters:  # the live screen's memory of where each box was drawn
        from flowscope.cli.map.layout import Memory

        live["memory"] = Memory()
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(FRAMES):
            console.print(
                frame(table.map_snapshot(), controls, "unix:///run/flowscope/hubble.sock", "app", width, height, **live)
            )
            console.file = io.StringIO()
        best = min(best, (time.process_time() - start) / FRAMES)
    return best


def cpu_per_flow(make: type[FlowTable], data: list[bytes], now: float) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        table = make(clock=lambda: now)
        start = time.process_time()
        for response in data:
            table.add(parse(response))
        best = min(best, (time.process_time() - start) / len(data))
    return best


def main() -> None:
    edges = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 160
    height = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    now = time.time()
    data = synthetic_flows(edges, now, FLOWS)
    table = MapTable(clock=lambda: now)
    for response in data:
        table.add(parse(response))
    snapshot = table.map_snapshot()
    print(
        f"{len(snapshot.edges)} edges, {len(snapshot.nodes)} nodes, {width}x{height} terminal;"
        f" CPU time, best of {ROUNDS}"
    )
    controls = MapControls("", lambda text: None)
    whole = cpu_per_frame(table, controls, width, height)
    print(f"  frame, whole map:  {whole * 1e3:6.2f} ms  = {whole * 100:5.2f}% of one CPU at 1 frame/s")
    controls.focus = int(snapshot.node_rates().argmax())
    focus = cpu_per_frame(table, controls, width, height)
    print(f"  frame, focus view: {focus * 1e3:6.2f} ms  = {focus * 100:5.2f}% of one CPU at 1 frame/s")
    world = synthetic_flows(edges, now, FLOWS, world=True)
    for name, make, flows in (
        ("MapTable (rows + edges)", MapTable, data),
        ("top's FlowTable alone", FlowTable, data),
        ("MapTable, from the world", MapTable, world),
    ):
        per_flow = cpu_per_flow(make, flows, now)
        print(
            f"  ingest, {name:<24} {per_flow * 1e6:6.2f} µs/flow"
            f" = {per_flow * RATE * 100:5.2f}% of one CPU at {RATE:,} flows/s"
        )


if __name__ == "__main__":
    main()
