"""Frames of `flowscope top` rendered to a recording console of a fixed size: rows, colours, header, footer."""

from __future__ import annotations

import io

import cli_samples
import top_samples
from bench_top_frame import measure
from rich.console import Console

from flowscope.api.flow import flow_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.main import build_parser
from flowscope.cli.top import render
from flowscope.cli.top.cells import BARS
from flowscope.cli.top.controls import Controls
from flowscope.cli.top.livefilter import LiveFilter
from flowscope.cli.top.state import FlowTable

NOW = 1_800_000_000.0
SERVER = "unix:///run/flowscope/hubble.sock"


def controls(text: str = "") -> Controls:
    return Controls(text, LiveFilter(build_parser().parse_args(["top"])).error)


def screen(table: FlowTable, keys: Controls, width: int = 150, height: int = 20) -> list[str]:
    """The frame as the lines a terminal of this size shows."""
    console = Console(file=io.StringIO(), record=True, width=width, height=height, color_system=None)
    keys.page = render.visible_rows(height)
    snapshot, order = keys.view(table.snapshot)
    console.print(render.frame(snapshot, order, keys, SERVER, width, height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def busy_table() -> FlowTable:
    table = FlowTable(clock=lambda: NOW)
    for offset in (-3.0, -2.0, -1.0):
        table.add(top_samples.response(cli_samples.aggregated_flow(), NOW + offset))
    for _ in range(4):
        table.add(top_samples.response(cli_samples.cilium_drop(), NOW - 0.5))
    table.add(top_samples.response(cli_samples.kernel_drop(), NOW - 0.2))
    table.add(top_samples.response(cli_samples.udp_dns_flow(), NOW - 30))
    table.add(cli_samples.lost_event())
    table.add(cli_samples.node_status(relay_pb2.NODE_CONNECTED, ("node-1", "node-2")))
    table.add(cli_samples.node_status(relay_pb2.NODE_UNAVAILABLE, ("node-3",)))
    return table


def test_rows_header_and_footer() -> None:
    lines = screen(busy_table(), controls("--namespace default"))
    assert len(lines) == 20
    assert lines[0] == "flowscope top  sort: rate 10s"
    assert lines[1] == "filter: --namespace default"
    assert lines[2].split() == [
        *("SOURCE", "DESTINATION", "PROTO", "VERDICT", "REASON", "2s/s", "10s/s▼", "40s/s", "LAST", "60s"),
        *("FLOWS", "PKTS", "BYTES", "SEEN"),
    ]
    rows = [[word for word in line.split() if word.strip(BARS)] for line in lines[3:7]]  # the numbers
    policy_drop = ("default/client", "default/server", "TCP/80", "DROPPED", "POLICY_DENIED")
    assert rows[0] == [*policy_drop, "2.0", "0.40", "0.10", "4", "-", "-", "now"]
    assert rows[1][:4] == ["default/client", "default/server", "TCP/80", "FORWARDED"]
    assert rows[1][4:] == ["1.0", "0.30", "0.07", "3", "36", "10.4k", "1s"]  # aggregated: packets and bytes
    assert rows[2][:5] == ["default/client", "default/server", "UDP/9999", "DROPPED", "NO_SOCKET"]
    dns = ("default/client", "kube-system/coredns-x", "UDP/53", "FORWARDED")
    assert rows[3] == [*dns, "·", "·", "0.03", "1", "-", "-", "30s"]  # 30 s ago: only in the 40 s window
    footer = lines[-3:]
    assert footer[0].split() == [
        *("flows/s", "3.5", "drops/s", "2.5", "drops", "5", "lost", "events", "1"),
        *("flows", "9", "rows", "4", "(showing", "1-4)"),
    ]
    assert footer[1] == f"server {SERVER}   nodes 2 connected, 1 unavailable: node-3 (unavailable)"
    assert footer[2].startswith("q quit  / filter")


def test_only_the_visible_slice_is_laid_out() -> None:
    table = FlowTable(clock=lambda: NOW)
    for index in range(100):
        table.add_flow(top_samples.at(top_samples.connection(f"c{index:03}", "server", 80), NOW - 1))
    keys = controls()
    lines = screen(table, keys, height=20)
    assert len(lines) == 20
    assert [line.split()[0] for line in lines[3:-3]] == [f"default/c{index:03}" for index in range(14)]
    assert "rows 100 (showing 1-14)" in lines[-3]
    keys.handle("pgdn")
    lines = screen(table, keys, height=20)
    assert lines[3].split()[0] == "default/c014"
    assert "(showing 15-28)" in lines[-3]


def test_an_empty_screen_keeps_its_footer_at_the_bottom() -> None:
    lines = screen(FlowTable(clock=lambda: NOW), controls(), height=12)
    assert len(lines) == 12
    assert lines[1] == "filter: none (/ to type one)"
    assert lines[-3].split()[:2] == ["flows/s", "0.0"]
    assert lines[-2] == f"server {SERVER}   nodes: none seen yet"


def test_a_narrow_screen_drops_optional_columns_first() -> None:
    lines = screen(busy_table(), controls(), width=90)
    assert lines[2].split() == ["SOURCE", "DESTINATION", "PROTO", "VERDICT", "REASON", "10s/s▼", "FLOWS", "SEEN"]
    assert all(len(line) <= 90 for line in lines)
    assert lines[3].split()[:2] == ["default/client", "default/server"]  # names keep their room


def test_long_names_are_cut_with_an_ellipsis() -> None:
    table = FlowTable(clock=lambda: NOW)
    table.add_flow(top_samples.at(top_samples.connection("a-very-long-pod-name-" * 3, "server", 80), NOW))
    line = screen(table, controls(), width=120)[3]
    assert line.split()[0].endswith("…")
    assert len(line) <= 120


def test_drops_are_red_and_the_sorted_column_is_marked() -> None:
    keys = controls()
    keys.handle("d")
    snapshot, order = keys.view(busy_table().snapshot)
    text = render.table(snapshot, order, keys, 150)
    plain = text.plain
    assert "VERDICT▼" in plain.splitlines()[0]
    styles = {plain[span.start : span.end].strip(): str(span.style) for span in text.spans}
    assert styles["DROPPED"] == "bold red"
    assert styles["FORWARDED"] == "green"
    assert styles["POLICY_DENIED"] == "red"


def test_the_filter_line_while_typing() -> None:
    keys = controls()
    for key in "/--verdict NOPE":
        keys.handle(key)
    assert screen(busy_table(), keys)[1] == (
        "filter> --verdict NOPE█  ✗ argument --verdict: invalid --verdict value: NOPE"
    )
    for key in ("ctrl-u", *"--verdict DROPPED"):
        keys.handle(key)
    assert screen(busy_table(), keys)[1] == "filter> --verdict DROPPED█  ✓ Enter applies, Esc cancels"


def test_paused_frozen_and_stream_errors_are_shown() -> None:
    table = busy_table()
    table.set_error("retrying every 2s: lost the connection to unix:///x: Socket closed")
    keys = controls()
    keys.handle("f")
    keys.handle("p")
    lines = screen(table, keys, width=200)
    assert lines[0].endswith("FROZEN PAUSED")
    assert "▼" not in lines[2]  # a frozen order is no sort
    assert lines[-2] == (
        f"server {SERVER}   ✗ retrying every 2s: lost the connection to unix:///x: Socket closed   "
        "nodes 2 connected, 1 unavailable: node-3 (unavailable)"
    )


def test_nodes_seen_in_flows_without_a_relay() -> None:
    table = FlowTable(clock=lambda: NOW)
    table.add(top_samples.response(cli_samples.tcp_flow(), NOW, node="node1"))
    table.add(top_samples.response(cli_samples.tcp_flow(), NOW, node="node2"))
    assert screen(table, controls())[-2] == f"server {SERVER}   nodes 2 seen in flows: node1, node2"


def test_a_verdict_without_a_colour_still_renders() -> None:
    flow = cli_samples.tcp_flow()
    flow.verdict = flow_pb2.VERDICT_UNKNOWN
    table = FlowTable(clock=lambda: NOW)
    table.add_flow(top_samples.at(flow, NOW))
    assert screen(table, controls())[3].split()[3] == "VERDICT_UNKNOWN"[:8] + "…"


def test_frame_time_with_ten_thousand_rows() -> None:
    """Snapshot, sort, layout and rendering of a 160x50 frame over 10,000 rows: well inside the 100 ms a
    10 Hz refresh allows (measured ~10 ms; bench_top_frame.py prints the breakdown)."""
    results = measure(10_000, 160, 50, frames=5)
    for sort_label, timing in results.items():
        assert timing["total median"] < 100, (sort_label, timing)
