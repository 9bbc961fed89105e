"""`flowscope top`: a live, full-screen view of what talks to what, and what is dropped.

A thread follows GetFlows and only counts (FlowTable.add); the main thread waits for keys and, 4 times a
second (at most 10 when keys are pressed), builds one frame from a snapshot and hands it to rich's Live on the
alternate screen. A new filter reconnects: the server applies it (its filters are hubble's, all of them, and
vectorised in the agent, so a narrow filter also means fewer flows to ship and count) and the new stream
starts with the last 40 s, so rows and rates come back at once. A broken stream is retried with observe -f's
backoff (cli/observe/follow.py: 1, 2, 4, 8, then every 10 s, from the first response again), the footer naming
the wait; a filter the server refuses (INVALID_ARGUMENT) never is: its reason is shown whole and the filter
before it stays.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Group

from flowscope.api.observer import observer_pb2
from flowscope.cli import history_top
from flowscope.cli.connection import Connection, ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.cli.observe.flags import add_filter_flags, add_selector_flags
from flowscope.cli.observe.request import raw_filters_yaml
from flowscope.cli.top import flowpanel, picture, render
from flowscope.cli.top.controls import Action, Controls
from flowscope.cli.top.livefilter import LiveFilter, initial_request, initial_text
from flowscope.cli.top.screen import Screen
from flowscope.cli.top.state import FlowTable
from flowscope.cli.top.stream import Stream

DESCRIPTION = """\
A live view of flows grouped by connection (source → destination, protocol/port, verdict, drop reason), with
flows/s over 2, 10 and 40 s, a sparkline of the last minute, the packets and bytes of aggregated flows, drops
in red, once there are L7 flows a connection's busiest request (answers by status, p50/p95), and a footer with
flows/s, drops, lost events and node status. Takes observe's filter and server flags; starts with the last
40 s unless --last, --all or --since says otherwise.

The L7 view (key v, or --l7 to start in it) shows the agent's L7 flows instead: a row per client → server,
protocol/port and what was asked (a DNS name and query type, an HTTP method and path), with the answers by
status (HTTP 2xx/4xx/5xx, DNS NOERROR/NXDOMAIN/...), requests/s, errors, and the p50/p95 latency of the
answers (since top started or the filter changed; within 10%).

Keys: q quit, / edit the filter (observe's flags, checked as typed; Enter applies, Esc cancels), v switch
between connections and L7, r sort by rate (again: 2s/10s/40s window), l last seen, d drops (L7: errors)
first, t total, s slowest p95 (L7), f freeze the order, p pause, arrows/PgUp/PgDn/Home/End scroll (the
selected row leads), Enter opens the selected connection's latest flows below the table (Enter/Esc close).

Key s on a connection (the opened one, or the selected row) starts a packet-path session on it: the screen steps
aside and `flowscope trace` runs with the connection's filter flags on top's server (sessions need an agent's
write side: its unix socket, mutual TLS, or a relay over those), following its next packets to their fate; Ctrl-C
ends the session early, and a key brings top back.

--once prints the table after a short read (the last 40 s, then 2 s of live flows) and exits; --svg FILE and
--html FILE write it as a picture instead.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top",
        usage="flowscope top [selectors] [filters] [server flags]",
        help="live view of flows by connection, rates and drops",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_selector_flags(parser)
    add_filter_flags(parser)
    add_server_flags(parser)
    parser.add_argument("--refresh", type=_hertz, default=4.0, metavar="HZ", help="frames a second, 4 to 10 (4)")
    parser.add_argument("--l7", action="store_true", help="start in the L7 view (DNS, HTTP); key v switches")
    once = parser.add_argument_group("once")
    once.add_argument("--once", action="store_true", help="print the table after a short read, then exit")
    once.add_argument("--svg", type=Path, metavar="FILE", help="write the table as an SVG picture (implies --once)")
    once.add_argument("--html", type=Path, metavar="FILE", help="write the table as HTML (implies --once)")
    once.add_argument("--width", type=int, metavar="COLS", help="the --once table's width (a picture's: 200)")
    history_top.add_history_flags(parser)
    # What observe's request building reads from its output flags: text output, the default field mask.
    parser.set_defaults(run=run, output="compact", field_mask=[], use_default_field_masks=True)


def _hertz(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 4 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be between 4 and 10: {text}")
    return value


def run(args: argparse.Namespace) -> int:
    request = initial_request(args)
    if args.print_raw_filters:
        sys.stdout.write(raw_filters_yaml(request))
        return 0
    if args.history is not None:
        return history_top.run(args, request)
    if args.once or args.svg or args.html:
        return _once(args, request)
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise CliError("top needs a terminal for its screen and keys; for a stream of flows use 'observe -f'")
    with connect(ServerOptions.from_args(args), channel=False) as connection:
        shown = "l7" if args.l7 else "flows"
        return Viewer(connection, LiveFilter(args), initial_text(args), 1.0 / args.refresh, shown).run(request)


def _once(args: argparse.Namespace, request: observer_pb2.GetFlowsRequest) -> int:
    """Read for picture.READ_SECONDS (or until the stream ends), then print or write the table once."""
    with connect(ServerOptions.from_args(args), channel=False) as connection:
        stream = Stream(connection, request, FlowTable())
        try:
            deadline = time.monotonic() + picture.READ_SECONDS
            while stream.ended_at is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stream.stop()
        if stream.refused or (stream.lost and not stream.received):
            raise CliError(stream.refused or stream.lost or "")
        shown = "l7" if args.l7 else "flows"
        picture.write(stream.table, shown, connection.target, args.svg, args.html, args.width)
    return 0


class Viewer(Screen):
    """top's screen: the connections (or L7) table, with the selected connection's latest flows below it."""

    def __init__(
        self, connection: Connection, live_filter: LiveFilter, text: str, interval: float, shown: str = "flows"
    ) -> None:
        self.controls = Controls(text, live_filter.error, shown)
        super().__init__(connection, live_filter, self.controls, interval)

    def new_table(self) -> FlowTable:
        return FlowTable()

    def handle(self, key: str) -> Action | None:
        return self.controls.handle(key)

    def trace_arguments(self) -> list[str] | None:
        key = self.controls.connection
        return flowpanel.trace_arguments(key) if key is not None else None

    def build(self, width: int, height: int) -> Group:
        """One frame from a fresh snapshot (or the paused one): the work done 4-10 times a second."""
        assert self.stream is not None
        table = self.stream.table
        opened = self.controls.opened is not None or self.controls.opening
        below = flowpanel.height(height) if opened and self.controls.shown == "flows" else 0
        self.controls.page = render.visible_rows(height, len(render.refusal(self.controls, width)) + below)
        snapshot, order = self.controls.view(table.snapshot)
        if table.opened != self.controls.opened:  # opened or closed by a key, or a new filter's table
            table.open(self.controls.opened)
        panel = None
        if self.controls.opened is not None and below:
            panel = flowpanel.panel(self.controls.opened, table.opened_flows(), below)
        return render.frame(snapshot, order, self.controls, self.connection.target, width, height, panel)
