"""`observe --history URL`: flows read back from ClickHouse (observer/history) instead of a server's ring, and
`observe --history-from-relay`: the same asked of the relay, which answers from its ClickHouse.

The request is the one the flags make for a server: its time window, filters and --first/--last apply the
same way; the answer is in time order and printed in any output format. Follow mode has no history.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import CliError, UsageError

# The gRPC metadata that marks a GetFlows call as a question for the relay's history (relay/history.py).
HISTORY_METADATA = ("flowscope-history", "1")


def add_history_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("history (ClickHouse)")
    group.add_argument(
        "--history",
        metavar="URL",
        help="read flows from ClickHouse's flow history at URL (http://HOST:8123/?database=db) instead of a server",
    )
    group.add_argument(
        "--history-cluster",
        action="store_true",
        help="with --history: read the cluster's Distributed table (flows_all) rather than one server's flows",
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
    from flowscope.observer.filters import FilterError
    from flowscope.observer.history.clickhouse import ClickHouse, ClickHouseError
    from flowscope.observer.history.migrate import table_for
    from flowscope.observer.history.reader import responses as read

    check(request)
    try:
        client = ClickHouse.connect(args.history)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield from read(client, request, table_for(args.history_cluster))
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    except ClickHouseError as exc:
        raise CliError(str(exc)) from None
    finally:
        client.close()


def check(request: observer_pb2.GetFlowsRequest) -> None:
    if request.follow:
        raise UsageError("--history reads what was stored: it cannot --follow")
