"""`flowscope observe agent-events` and `observe debug-events`: the agent's own events and the datapath's debug
events, with the selectors and output formats of `observe flows` but no filters, as hubble's subcommands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.connection import ServerOptions, connect
from flowscope.cli.errors import UsageError
from flowscope.cli.observe.flags import filter_words
from flowscope.cli.observe.request import select
from flowscope.cli.printer import PrintOptions, Sink
from flowscope.cli.printer.agent_events import EventPrinter
from flowscope.cli.printer.sink import wants_color

KINDS = ("agent-events", "debug-events")


def run_events(args: argparse.Namespace) -> int:
    """Ask the server for the events `args.what` names and print them as they come."""
    given = filter_words(args) + [f"--{name}" for name in ("allowlist", "denylist") if getattr(args, name)]
    if given:
        raise UsageError(f"{args.what} takes no filters ({' '.join(given[:3])})")
    printer = EventPrinter(args.output, _sink(args), PrintOptions(args.time_format, args.print_node_name))
    with connect(ServerOptions.from_args(args)) as connection:
        call = _call(args, observer_pb2_grpc.ObserverStub(connection.channel))
        try:
            for response in call:
                printer.write(response)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise connection.error(exc) from None
        except KeyboardInterrupt:
            call.cancel()  # Ctrl-C ends a follow; what was printed stands, like hubble
        finally:
            printer.close()
    return 0


def _call(args: argparse.Namespace, stub: observer_pb2_grpc.ObserverStub) -> Any:
    """The streaming call (iterable, cancellable; the generated stub is untyped) for `args.what`."""
    now = lambda: datetime.now(UTC)  # noqa: E731
    if args.what == "agent-events":
        agent_request = observer_pb2.GetAgentEventsRequest()
        select(agent_request, args, now)
        return stub.GetAgentEvents(agent_request)
    debug_request = observer_pb2.GetDebugEventsRequest()
    select(debug_request, args, now)
    return stub.GetDebugEvents(debug_request)


def _sink(args: argparse.Namespace) -> Sink:
    colored = args.output not in ("table", "tab", "json", "jsonpb")
    return Sink(sys.stdout, color=colored and wants_color(args.color, sys.stdout), flush_each=args.follow)
