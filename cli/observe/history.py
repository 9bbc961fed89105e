"""`observe --history URL`: flows read back from ClickHouse (observer/history) instead of a server's ring, and
`observe --history-from-relay`: the same asked of the relay, which answers from its ClickHouse.

The request is the one the flags make for a server: its time window, filters and --first/--last apply the
same way; the answer is in time order and printed in any output format. Follow mode has no history.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import CliError, UsageError

if TYPE_CHECKING:  # ClickHouse's client is imported when a command reads the history, not at every start
    from flowscope.observer.history.clickhouse import ClickHouse

# The gRPC metadata that marks a GetFlows call as a question for the relay's history (relay/history.py).
HISTORY_METADATA = ("flowscope-history", "1")


def add_history_flags(parser: argparse.ArgumentParser) -> None:
    group = add_clickhouse_flags(
        parser,
        "read flows from ClickHouse's flow history at URL (http://HOST:8123/?database=db) instead of a server",
        "with --history: read the cluster's Distributed table (flows_all) rather than one server's flows",
    )
    group.add_argument(
        "--history-from-relay",
        action="store_true",
        help="ask the relay (--server) for its history (relay --history) instead of its nodes' rings",
    )


def responses(
    args: argparse.Namespace, request: observer_pb2.GetFlowsRequest
) -> Iterator[observer_pb2.GetFlowsResponse]:
    """The flows ClickHouse holds for `request`, oldest first; one clear error when it cannot answer."""
    from flowscope.observer.history.migrate import table_for
    from flowscope.observer.history.reader import responses as read

    check(request)
    with clickhouse(args.history) as client:
        yield from read(client, request, table_for(args.history_cluster))


def add_clickhouse_flags(parser: argparse.ArgumentParser, history: str, cluster: str) -> argparse._ArgumentGroup:
    """--history URL and --history-cluster, which observe and top read the same way (`clickhouse`), each with
    its own words for what it reads there."""
    group = parser.add_argument_group("history (ClickHouse)")
    group.add_argument("--history", metavar="URL", help=history)
    group.add_argument("--history-cluster", action="store_true", help=cluster)
    return group


@contextmanager
def clickhouse(url: str) -> Iterator[ClickHouse]:
    """ClickHouse at `url` for the queries of one command, closed after them. A bad URL or filter is the
    user's to mend (a usage error); ClickHouse's own refusal or silence is one clear line."""
    from flowscope.observer.filters import FilterError
    from flowscope.observer.history.clickhouse import ClickHouse, ClickHouseError

    try:
        client = ClickHouse.connect(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield client
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    except ClickHouseError as exc:
        raise CliError(str(exc)) from None
    finally:
        client.close()


def check(request: observer_pb2.GetFlowsRequest) -> None:
    if request.follow:
        raise UsageError("--history reads what was stored: it cannot --follow")
