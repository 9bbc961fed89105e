"""`flowscope top --history URL --since 1d`: who talked most in a window of the history, as one table printed
once (the window is over: there is nothing to follow), busiest first."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import UsageError
from flowscope.cli.observe.history import add_clickhouse_flags, clickhouse


def add_history_flags(parser: argparse.ArgumentParser) -> None:
    group = add_clickhouse_flags(
        parser,
        "who talked most in the --since/--until window of ClickHouse's flow history at URL (a table, once)",
        "read the cluster's Distributed table",
    )
    group.add_argument("--rows", type=int, default=20, metavar="N", help="with --history: the N busiest (20)")


def run(args: argparse.Namespace, request: observer_pb2.GetFlowsRequest) -> int:
    from flowscope.observer.history.migrate import table_for
    from flowscope.observer.history.top import top_talkers

    if args.follow:
        raise UsageError("--history reads what was stored: it cannot --follow")
    request.follow = False  # top's live request follows; a window of the history is over
    with clickhouse(args.history) as client:
        talkers = top_talkers(client, request, table_for(args.history_cluster), args.rows)
    table = Table("SOURCE", "DESTINATION", "PROTO", "VERDICT", "FLOWS", "FIRST SEEN", "LAST SEEN", box=None)
    for t in talkers:
        verdict = f"[red]{t.verdict}[/red]" if t.verdict in ("DROPPED", "ERROR") else t.verdict
        table.add_row(t.source, t.destination, t.protocol, verdict, str(t.flows), _time(t.first_ns), _time(t.last_ns))
    console = Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None)
    console.print(table if talkers else "no flows in that window")
    return 0


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
