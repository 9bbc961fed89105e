"""`flowscope map`: who talks to whom, drawn as a graph in the terminal, live, or once as a picture.

It reads GetFlows as `top` does (top's Stream: a daemon thread feeding a table; here top's FlowTable grown into
a MapTable that also counts edges), with observe's filters and server flags, starting with the last 40 s; the
main thread waits for keys and redraws once a second (the map changes slowly, and a frame costs CPU in
proportion to what is on screen). A broken stream is asked again after observe -f's backoff, a refused filter
goes back to the one before, as in top.

`--once` reads the last 40 s of the ring (a request that ends, not a followed one), draws one map and exits:
to the terminal, or to `--svg`, `--html`, `--png` and `--dot` files.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from rich.console import Console, Group

from flowscope.api.observer import observer_pb2
from flowscope.cli.connection import Connection, ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.cli.map import export
from flowscope.cli.map.controls import MapControls
from flowscope.cli.map.frame import frame
from flowscope.cli.map.graph import MapTable
from flowscope.cli.map.layout import Memory
from flowscope.cli.map.nodes import GROUPINGS
from flowscope.cli.observe.flags import add_filter_flags, add_selector_flags
from flowscope.cli.observe.request import build_request, raw_filters_yaml
from flowscope.cli.top.controls import Action
from flowscope.cli.top.livefilter import BACKFILL, LiveFilter, initial_request, initial_text
from flowscope.cli.top.screen import Screen
from flowscope.cli.top.stream import Stream

PICTURE_WIDTH = 140  # columns of a picture when no terminal says otherwise
ONCE_TIMEOUT = 30.0
MAP_FIELDS = (
    "time,verdict,drop_reason,drop_reason_desc,IP,l4,source,destination,Type,node_name,event_type,"
    "source_service,destination_service,is_reply,l7,flowscope,Summary"
)  # seconds --once waits for the server to send the window

DESCRIPTION = """\
A live map of who talks to whom: workloads grouped by namespace (the world, the host and remote nodes as
boxes of their own, a link's own traffic - fe80::, ff02::, 224.0.0.0/4, ARP - on (link-local) and (multicast),
services as the entry to their backends), sources left and destinations right, edges
labelled with protocol/port and flows/s (over 10 s), red when flows were dropped (with their share over 40 s),
yellow when L7 answers were errors (HTTP 5xx, DNS NXDOMAIN/SERVFAIL). Boxes keep their place as traffic
changes; what does not fit the terminal is folded into "+N more" (the quietest first). Takes observe's filter
and server flags; starts with the last 40 s.

Keys: arrows or h/j/k/l select a node, Enter focuses it (its edges only, and its latest flows), Esc goes back,
/ edits the filter (observe's flags, as in top), p pauses, q quits.

--once reads the last 40 s, draws the map once and exits; with --svg/--html/--png/--dot FILE it writes it there.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "map",
        usage="flowscope map [--by app|pod|identity] [--once [--svg F] [--html F] [--png F] [--dot F]] [filters]",
        help="live map of who talks to whom: edges, rates, drops, L7 errors",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_selector_flags(parser)
    add_filter_flags(parser)
    add_server_flags(parser)
    parser.add_argument(
        "--by", choices=GROUPINGS, default="app", help="what a box is: app label (default), pod, identity"
    )
    parser.add_argument("--refresh", type=float, default=1.0, metavar="SECONDS", help="seconds between frames (1)")
    pictures = parser.add_argument_group("pictures (with --once)")
    pictures.add_argument("--once", action="store_true", help="read the last 40 s, draw once, exit")
    pictures.add_argument("--svg", type=Path, metavar="FILE", help="write the map as SVG")
    pictures.add_argument("--html", type=Path, metavar="FILE", help="write the map as HTML")
    pictures.add_argument("--png", type=Path, metavar="FILE", help="write the map as PNG (needs rsvg-convert)")
    pictures.add_argument("--dot", type=Path, metavar="FILE", help="write the map as Graphviz text ('-': stdout)")
    pictures.add_argument("--width", type=int, default=None, help="columns of a picture (the terminal's, else 140)")
    # What observe's request building reads from its output flags: the fields a map reads (labels among them,
    # which the text outputs' default mask leaves out), asked for as JSON output asks for a custom mask.
    parser.set_defaults(run=run, output="json", field_mask=[MAP_FIELDS], use_default_field_masks=False)


def run(args: argparse.Namespace) -> int:
    request = initial_request(args)
    if args.print_raw_filters:
        sys.stdout.write(raw_filters_yaml(request))
        return 0
    pictures = [args.svg, args.html, args.png, args.dot]
    if any(pictures) and not args.once:
        raise CliError("--svg, --html, --png and --dot write one picture: add --once")
    if args.refresh < 0.1:
        raise CliError(f"--refresh must be at least 0.1 s, not {args.refresh:g}")
    with connect(ServerOptions.from_args(args), channel=False) as connection:
        if args.once:
            return _once(connection, args)
        if not (sys.stdout.isatty() and sys.stdin.isatty()):
            raise CliError("map needs a terminal for its screen and keys; for a picture use 'map --once --svg F'")
        return Viewer(connection, LiveFilter(args), initial_text(args), args).run(request)


def _once_request(args: argparse.Namespace) -> observer_pb2.GetFlowsRequest:
    """The window as a request that ends: the last 40 s unless the selectors chose otherwise."""
    args = copy.copy(args)
    args.follow = False
    if not (args.last or args.all or args.since or args.first):
        args.since = BACKFILL
    return build_request(args)


def _once(connection: Connection, args: argparse.Namespace) -> int:
    table = MapTable(args.by)
    stream = Stream(connection, _once_request(args), table)
    deadline = time.monotonic() + ONCE_TIMEOUT
    while stream.ended_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.stop()
    if stream.refused or (stream.lost and stream.lost != "the server ended the stream"):
        raise CliError(stream.refused or stream.lost or "")
    snapshot = table.map_snapshot()
    console = Console(highlight=False, markup=False, emoji=False)
    width = args.width or (console.size.width if console.is_terminal else PICTURE_WIDTH)
    console = Console(highlight=False, markup=False, emoji=False, width=width)
    picture = frame(snapshot, None, connection.target, args.by, width, 10_000)
    if args.dot is not None:
        text = export.dot(snapshot)
        sys.stdout.write(text) if str(args.dot) == "-" else args.dot.write_text(text)
    for path, write in ((args.svg, export.write_svg), (args.html, export.write_html), (args.png, export.write_png)):
        if path is not None:
            write(picture, width, path)
    if not any((args.svg, args.html, args.png, args.dot)):
        console.print(picture)
    return 0


class Viewer(Screen):
    """map's screen: the graph, redrawn every --refresh seconds (the loop is top's, cli/top/screen.py)."""

    def __init__(self, connection: Connection, live_filter: LiveFilter, text: str, args: argparse.Namespace) -> None:
        self.controls = MapControls(text, live_filter.error)
        self.by = args.by
        self.memory = Memory()  # where the last frame drew each box of the table's
        super().__init__(connection, live_filter, self.controls.filter, args.refresh)

    def new_table(self) -> MapTable:
        """A new filter's table, whose nodes start afresh: so do the places remembered for them."""
        self.memory = Memory()
        return MapTable(self.by)

    def handle(self, key: str) -> Action | None:
        return self.controls.handle(key)

    def build(self, width: int, height: int) -> Group:
        assert self.stream is not None
        table = self.stream.table
        assert isinstance(table, MapTable)
        snapshot = self.controls.view(table.map_snapshot)
        return frame(snapshot, self.controls, self.connection.target, self.by, width, height, self.memory)
