"""What issue 17 added to `flowscope top`: sparklines of the last minute, the L7 column of the connection view,
the selected row and its opened flows, and the table written once as a picture."""

from __future__ import annotations

import io
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cli_samples
import numpy as np
import pytest
import top_samples
from cli_fake_server import FakeServer
from cli_runner import run_flowscope
from rich.console import Console
from test_top_l7 import WEB, exchange, http_request, http_response

from flowscope.api.flow import flow_pb2
from flowscope.cli.connection import ServerOptions
from flowscope.cli.errors import CliError
from flowscope.cli.main import build_parser
from flowscope.cli.top import flowpanel, picture, render, session
from flowscope.cli.top.cells import BARS, sparkline
from flowscope.cli.top.controls import Action, Controls
from flowscope.cli.top.livefilter import LiveFilter
from flowscope.cli.top.state import FlowTable
from flowscope.cli.trace import command as trace

NOW = 1_800_000_000.25
SERVER = "unix:///run/flowscope/hubble.sock"


def controls(*keys: str) -> Controls:
    handled = Controls("", LiveFilter(build_parser().parse_args(["top"])).error)
    for key in keys:
        handled.handle(key)
    return handled


def screen(table: FlowTable, keys: Controls, width: int = 220, height: int = 20) -> list[str]:
    console = Console(file=io.StringIO(), record=True, width=width, height=height, color_system=None)
    keys.page = render.visible_rows(height)
    snapshot, order = keys.view(table.snapshot)
    console.print(render.frame(snapshot, order, keys, SERVER, width, height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_a_sparkline_is_scaled_to_its_busiest_bar_and_blank_where_nothing_came() -> None:
    assert sparkline(np.zeros(60, np.int64), 15) == " " * 15
    steady = sparkline(np.full(60, 7), 15)
    assert steady == "█" * 15
    rising = sparkline(np.arange(60), 15)
    assert len(rising) == 15 and rising[0] == "▁" and rising[-1] == "█"
    assert [BARS.index(bar) for bar in rising] == sorted(BARS.index(bar) for bar in rising)
    one = np.zeros(60, np.int64)
    one[0] = 1
    assert sparkline(one, 15) == "█" + " " * 14  # a single flow is a full bar in a quiet row, never a blank
    burst = np.zeros(60, np.int64)
    burst[30], burst[59] = 100, 1
    drawn = sparkline(burst, 15)
    assert drawn[7] == "█" and drawn[-1] == "▁" and drawn[:7].strip() == ""  # four seconds a bar


def test_a_rows_sparkline_is_its_last_minute_second_by_second() -> None:
    table = FlowTable(clock=lambda: NOW)
    steady = top_samples.connection("steady", "server", 80)
    for back in range(1, 61):
        table.add_flow(top_samples.at(steady, NOW - back))
    late = top_samples.connection("late", "server", 80)
    for _ in range(3):
        table.add_flow(top_samples.at(late, NOW - 2))
    table.add_flow(top_samples.at(late, NOW - 0.1))  # the current second: still growing, not drawn yet
    table.add_flow(top_samples.at(top_samples.connection("old", "server", 80), NOW - 70))  # before the minute
    snapshot = table.snapshot()
    rows = {key.source: row for row, key in enumerate(snapshot.keys)}
    assert snapshot.history.of(rows["default/steady"]).tolist() == [1] * 60
    assert snapshot.history.of(rows["default/late"]).tolist() == [0] * 58 + [3, 0]
    assert not snapshot.history.of(rows["default/old"]).any()
    lines = {line.split()[0]: line for line in screen(table, controls())[3:6]}
    assert "█" * 15 in lines["default/steady"]
    assert "              █" in lines["default/late"]
    assert not set(lines["default/old"]) & set(BARS)


def test_the_minute_moves_on_when_no_flow_comes() -> None:
    clock = [NOW]
    table = FlowTable(clock=lambda: clock[0])
    table.add_flow(top_samples.at(top_samples.connection("a", "server", 80), NOW - 1))
    assert table.snapshot().history.of(0)[-1] == 1
    clock[0] += 30
    assert table.snapshot().history.of(0).tolist() == [0] * 29 + [1] + [0] * 30
    clock[0] += 31
    assert not table.snapshot().history.of(0).any()


def l3l4(flow: flow_pb2.Flow) -> flow_pb2.Flow:
    """The packet an L7 message came in, as the datapath also reports it: the same ends and ports, no L7."""
    packet = flow_pb2.Flow()
    packet.CopyFrom(flow)
    packet.ClearField("l7")
    packet.Type, packet.event_type.type = flow_pb2.L3_L4, 4
    return packet


def test_the_l7_column_shows_a_connections_busiest_request_answers_and_latency() -> None:
    table = FlowTable(clock=lambda: NOW)
    flows = exchange()
    for index, flow in enumerate([*flows, l3l4(flows[0]), l3l4(flows[8])]):
        table.add_flow(top_samples.at(flow, NOW - 1 + index / 100))
    lines = screen(table, controls("t"))
    assert "L7" in lines[2].split()
    rows = {(line.split()[1], line.split()[2]): line for line in lines[3:8] if line.startswith("default/client ")}
    dns = rows[("kube-system/coredns", "UDP/53")]
    # web.web.svc.lab. A asked twice (the busiest), AAAA and nope... too: their answers together, A's latency.
    assert "web.web.sv… +2 ok 3 NXDOMAIN 1 1.88ms/3.76ms" in dns
    http = rows[("web/web", "TCP/80")]
    assert "GET / +3 2xx 2 4xx 1 5xx 1 " in http
    assert "ms/" in http
    server = next(line for line in lines[3:8] if "default/server" in line)
    assert "GET" not in server and "NOERROR" not in server  # no L7 on this connection: an empty cell
    no_l7 = FlowTable(clock=lambda: NOW)
    no_l7.add_flow(top_samples.at(l3l4(flows[0]), NOW - 1))
    assert "L7" not in screen(no_l7, controls())[2].split()  # no column before there is any L7


def test_the_l7_cell_is_red_when_an_answer_was_an_error() -> None:
    table = FlowTable(clock=lambda: NOW)
    for flow in (http_request("GET", "/x"), http_response("GET", "/x", 503, 3.0)):
        table.add_flow(top_samples.at(flow, NOW - 1))
        table.add_flow(top_samples.at(l3l4(flow), NOW - 1))
    snapshot = table.snapshot()
    key = snapshot.keys[0]
    assert key.destination == f"{WEB[1].namespace}/{WEB[1].pod_name}"
    cell = render._cells(snapshot, frozenset({render.L7}), {}, 0)[render.L7]
    assert cell[0].startswith("GET /x 5xx 1 ") and cell[1] == "red"


def test_down_and_end_select_rows_and_enter_opens_the_selected_one() -> None:
    table = FlowTable(clock=lambda: NOW)
    for index in range(30):
        table.add_flow(top_samples.at(top_samples.connection(f"c{index:02}", "server", 80), NOW - 1 + index / 100))
    keys = controls("l")  # last seen first: c29, c28, ...
    keys.page = 10
    keys.view(table.snapshot)
    keys.handle("down")
    assert (keys.selected, keys.offset) == (1, 1)
    keys.handle("end")
    assert (keys.selected, keys.offset) == (29, 20)  # the last row, on the last page
    keys.handle("up")
    assert (keys.selected, keys.offset) == (28, 20)
    keys.handle("enter")
    keys.view(table.snapshot)
    assert keys.opened is not None and keys.opened.source == "default/c01"
    assert "Enter/Esc close" in keys.help
    keys.handle("esc")
    assert keys.opened is None
    keys.handle("enter")
    keys.view(table.snapshot)
    keys.handle("enter")
    assert keys.opened is None and not keys.opening
    keys.handle("v")
    keys.handle("enter")
    keys.view(table.snapshot)
    assert keys.opened is None  # the L7 view has no connections to open


def test_s_traces_the_opened_connection_or_else_the_selected_row() -> None:
    table = FlowTable(clock=lambda: NOW)
    for index in range(3):
        table.add_flow(top_samples.at(top_samples.connection(f"c{index}", "server", 80), NOW - 1 + index / 100))
    keys = controls("l")  # last seen first: c2, c1, c0
    assert keys.handle("s") is None  # no frame yet: no row to trace
    keys.view(table.snapshot)
    assert keys.handle("s") is Action.TRACE
    assert keys.connection is not None and keys.connection.source == "default/c2"
    keys.handle("down")
    keys.view(table.snapshot)
    assert keys.connection is not None and keys.connection.source == "default/c1"
    keys.handle("enter")
    keys.view(table.snapshot)
    keys.handle("down")
    keys.view(table.snapshot)
    assert keys.opened is not None and keys.current is not None
    assert keys.opened.source == "default/c1" and keys.current.source == "default/c0"
    assert keys.handle("s") is Action.TRACE and keys.connection == keys.opened  # the opened one first
    assert "s trace" in keys.help
    keys.handle("v")
    keys.view(table.snapshot)
    assert keys.handle("s") is None and keys.sort == "slow"  # the L7 view's slowest-first sort, as before


def test_a_session_from_top_is_trace_on_tops_server() -> None:
    table = FlowTable(clock=lambda: NOW)
    table.add_flow(top_samples.at(top_samples.connection("client", "server", 9000), NOW - 1))
    arguments = flowpanel.trace_arguments(table.snapshot().keys[0])
    top = build_parser().parse_args(["top", "--server", "tls://relay:4245", "--tls-server-name", "relay.local"])
    options = ServerOptions.from_args(top)
    args = session.parse(session.command_line(arguments, options))
    assert ServerOptions.from_args(args) == options
    picked = trace.build_request(args)
    assert [list(f.destination_port) for f in picked.filters] == [["9000"]]
    assert list(picked.filters[0].source_pod) == ["default/client"]
    assert list(picked.filters[0].destination_pod) == ["default/server"]
    assert (picked.count, picked.duration.seconds, args.output) == (10, 30, "tree")  # trace's own defaults
    unchosen = ServerOptions.from_args(build_parser().parse_args(["top"]))
    assert "--server" not in session.command_line(arguments, unchosen)  # found as a typed trace finds it
    with pytest.raises(CliError, match="flowscope trace: unrecognized arguments: --bogus"):
        session.parse(["--bogus"])


def test_an_opened_connection_keeps_its_latest_flows_as_observe_prints_them() -> None:
    table = FlowTable(clock=lambda: NOW)
    wanted = top_samples.connection("client", "server", 9000)
    other = top_samples.connection("other", "server", 80)
    for index in range(5):
        table.add_flow(top_samples.at(wanted, NOW - 2 + index / 10))
        table.add_flow(top_samples.at(other, NOW - 2 + index / 10))
    keys = controls("t")
    keys.view(table.snapshot)
    keys.handle("enter")
    keys.view(table.snapshot)
    assert keys.opened is not None and keys.opened.source == "default/client"
    table.open(keys.opened)
    assert len(table.opened_flows()) == 5  # those it had
    table.add_flow(top_samples.at(wanted, NOW - 0.5))
    table.add_flow(top_samples.at(other, NOW - 0.5))
    flows = table.opened_flows()
    assert len(flows) == 6 and all(flow.source.pod_name == "client" for flow in flows)
    lines = [line.plain for line in flowpanel.panel(keys.opened, flows, 5)]
    assert len(lines) == 5
    assert lines[0].startswith(" default/client → default/server TCP/9000 FORWARDED ")
    assert "flowscope trace --protocol tcp --to-port 9000 --from-pod default/client --to-pod default/server" in lines[0]
    assert all("default/client:34567 (ID:12345) -> default/server:9000 (ID:23456)" in line for line in lines[1:])
    assert all("to-endpoint FORWARDED (TCP Flags: SYN)" in line for line in lines[1:])


def test_a_connection_opened_before_its_first_flow_fills_as_flows_come() -> None:
    old = FlowTable(clock=lambda: NOW)
    old.add_flow(top_samples.at(top_samples.connection("client", "server", 9000), NOW - 1))
    key = old.snapshot().keys[0]
    table = FlowTable(clock=lambda: NOW)  # a new filter's table
    table.open(key)
    assert table.opened == key and table.opened_flows() == []
    table.add_flow(top_samples.at(cli_samples.kernel_drop(), NOW - 0.5))
    table.add_flow(top_samples.at(top_samples.connection("client", "server", 9000), NOW - 0.4))
    assert len(table.opened_flows()) == 1
    table.open(None)
    assert table.opened_flows() == []


def test_trace_arguments_name_pods_addresses_and_the_port() -> None:
    table = FlowTable(clock=lambda: NOW)
    table.add_flow(top_samples.at(cli_samples.kernel_drop(), NOW - 1))
    key = table.snapshot().keys[0]
    arguments = flowpanel.trace_arguments(key)
    assert arguments[:4] == ["--protocol", "udp", "--to-port", key.protocol.split("/")[1]]
    assert build_parser().parse_args(["trace", *arguments])  # flags trace takes


def test_once_writes_the_table_as_an_svg(tmp_path: Path) -> None:
    table = FlowTable()
    flows = exchange()
    for flow in [*flows, l3l4(flows[8])]:
        table.add_flow(top_samples.at(flow, NOW - 1))
    svg, html = tmp_path / "top.svg", tmp_path / "top.html"
    picture.write(table, "flows", SERVER, svg, html, None)
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = "".join(root.itertext()).replace("\xa0", " ")
    for word in ("flowscope top", "default/client", "default/server", "TCP/9000", "web/web", "GET / "):
        assert word in text
    assert "q quit" not in text  # no keys in a picture
    assert "default/server" in html.read_text()


def test_once_prints_the_table_without_a_terminal(server: FakeServer, env: dict[str, str]) -> None:
    def feed() -> None:  # once top follows: the fake server's follow mode sends only what is pushed
        server.observer.following.wait(30)
        for flow in (top_samples.connection("client", "server", 9000), cli_samples.kernel_drop()):
            server.push(top_samples.response(flow, time.time() - 0.5))

    threading.Thread(target=feed, daemon=True).start()
    done = run_flowscope("top", "--server", server.target, "--once", "--width", "180", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("flowscope top")
    assert any("default/client" in line and "default/server" in line and "TCP/9000" in line for line in lines)
    assert any("DROPPED" in line and "NO_SOCKET" in line for line in lines)
    assert "rows 2 (showing 1-2)" in done.stdout and "q quit" not in done.stdout
    assert "\x1b" not in done.stdout  # a pipe gets plain text
    assert max(len(line) for line in lines) <= 180


def test_once_says_in_one_line_when_it_cannot_write_the_picture(server: FakeServer, env: dict[str, str]) -> None:
    done = run_flowscope("top", "--server", server.target, "--svg", "/nonexistent/dir/top.svg", env=env)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "cannot write /nonexistent/dir/top.svg" in done.stderr
