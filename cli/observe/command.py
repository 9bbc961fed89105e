"""`flowscope observe` (or `flowscope observe flows`): ask a server for flows, print them as they come."""

from __future__ import annotations

import argparse
import sys

from flowscope.cli.connection import ServerOptions, add_server_flags, connect
from flowscope.cli.errors import UsageError
from flowscope.cli.interrupts import Interrupts
from flowscope.cli.observe import follow, history, offline
from flowscope.cli.observe.events import KINDS, run_events
from flowscope.cli.observe.flags import add_filter_flags, add_format_flags, add_selector_flags
from flowscope.cli.observe.request import build_request, raw_filters_yaml
from flowscope.cli.printer import FlowPrinter, PrintOptions, Sink, make_printer
from flowscope.cli.printer.sink import wants_color

DESCRIPTION = """\
Observe flows of a flowscope (or Hubble) server: the last 20 by default, --follow to keep watching.

Filters: a flow must match one of the values given for each filter flag, and all the filter flags given.
--X matches either end, --from-X the source and --to-X the destination; --not excludes what the next filter
matches. Examples:
  flowscope observe --namespace default --verdict DROPPED
  flowscope observe -f --to-pod kube-system/coredns --protocol udp
  flowscope observe --not --type trace:to-stack -o json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "observe",
        usage="flowscope observe [flows|agent-events|debug-events] [selectors] [filters] [output flags] [server flags]",
        help="observe flows (hubble observe)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    # Checked in run, not with `choices`: argparse checks choices before it reports unknown flags, so
    # `observe --lst 5` would blame the 5 instead of naming --lst.
    parser.add_argument(
        "what",
        nargs="?",
        metavar="{flows,agent-events,debug-events}",
        help="what to observe: flows (the default), the agents' own events, or the datapath's debug events",
    )
    add_selector_flags(parser)
    add_filter_flags(parser)
    add_format_flags(parser)
    add_server_flags(parser)
    offline.add_input_flag(parser)
    history.add_history_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.what not in (None, "flows", *KINDS):
        raise UsageError(f"unknown object to observe {args.what!r}: flows, {', '.join(KINDS)}")
    if args.output in ("table", "tab") and args.follow:
        raise UsageError("table output format is not compatible with follow mode")
    if args.what in KINDS:
        return run_events(args)
    request = build_request(args)
    if args.print_raw_filters:
        sys.stdout.write(raw_filters_yaml(request))
        return 0
    printer = _printer(args)
    if args.history is not None:
        try:
            for response in history.responses(args, request):
                printer.write(response)
        finally:
            printer.close()
        return 0
    if args.input_file is not None:
        with offline.opened(args.input_file) as lines:
            try:
                for response in offline.responses(lines, request, args.input_file):
                    printer.write(response)
            finally:
                printer.close()
        return 0
    # Ctrl-C ends a follow with what was printed standing, and exit 0, like hubble.
    with connect(ServerOptions.from_args(args), channel=False) as connection, Interrupts() as interrupts:
        if args.history_from_relay:
            history.check(request)
            connection.metadata = (history.HISTORY_METADATA,)
        try:
            for batch in follow.batches(connection, request, interrupts, _say):
                printer.write_bytes(batch)
        finally:
            printer.close()
    return 0


def _say(line: str) -> None:
    print(f"flowscope: {line}", file=sys.stderr, flush=True)


def _printer(args: argparse.Namespace) -> FlowPrinter:
    colored = args.output not in ("table", "tab", "json", "jsonpb")
    out = Sink(sys.stdout, color=colored and wants_color(args.color, sys.stdout), flush_each=args.follow)
    err = Sink(sys.stderr, color=colored and wants_color(args.color, sys.stderr), flush_each=True)
    options = PrintOptions(
        time_format=args.time_format,
        node_name=args.print_node_name,
        policy_names=args.print_policy_names,
        ip_translation=args.ip_translation and not args.numeric,
        debug=args.debug,
    )
    return make_printer(args.output, out, err, options)
