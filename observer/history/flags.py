"""The flags that send a node's (or the relay's) flows to ClickHouse, shared by `flowscope agent` and `relay`."""

from __future__ import annotations

import argparse

from flowscope.observer.history.writer import WriterOptions


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("history (ClickHouse)")
    group.add_argument(
        "--export-clickhouse",
        metavar="URL",
        help="store every flow in ClickHouse through its HTTP interface, e.g. http://127.0.0.1:8123/?database=db"
        " (the schema is applied at start; docs/history.md)",
    )
    group.add_argument(
        "--history-retention-days",
        type=_days,
        metavar="N",
        help="drop the daily partitions of flows older than N days (checked hourly); none by default",
    )
    group.add_argument(
        "--history-cluster",
        action="store_true",
        help="ClickHouse is a cluster: also create the Distributed table (flows_all, over the server's {cluster}"
        " macro) and write into it",
    )


def writer_options(args: argparse.Namespace) -> WriterOptions:
    return WriterOptions(cluster=args.history_cluster, retention_days=args.history_retention_days)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {days}")
    return days
