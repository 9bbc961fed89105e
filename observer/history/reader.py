"""Flows read back from ClickHouse for a GetFlowsRequest, as the responses a server would have sent.

The query (observer/history/query.py) pushes what it can into SQL; the rows come back as RowBinary (time,
node, the whole Flow's bytes) and are streamed, decoded and filtered again with Hubble's semantics over
messages, so the answer is exactly what the filters select. --last reads newest first and stops at N, then
turns them around: the answer is always in time order.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from flowscope.api.observer import observer_pb2
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.history.clickhouse import ClickHouse
from flowscope.observer.history.query import build
from flowscope.observer.history.rows import RowReader


def responses(
    client: ClickHouse, request: observer_pb2.GetFlowsRequest, table: str
) -> Iterator[observer_pb2.GetFlowsResponse]:
    """The flow responses `request` selects from `table`, oldest first. FilterError for a bad filter value,
    ClickHouseError when the server refuses or cannot be reached."""
    keep = compile_flow_filters(request.whitelist, request.blacklist)  # refuses bad values before any query
    query = build(request, table)
    selected = (r for r in _decoded(client, query.sql) if keep(r.flow))
    if query.limit is None:
        yield from selected
        return
    wanted = collections.deque[observer_pb2.GetFlowsResponse]()
    for response in selected:
        wanted.append(response)
        if len(wanted) >= query.limit:
            break
    if query.newest_first:
        wanted.reverse()
    yield from wanted


def _decoded(client: ClickHouse, sql: str) -> Iterator[observer_pb2.GetFlowsResponse]:
    reader = RowReader()
    chunks = client.stream(sql)
    try:
        for chunk in chunks:
            for ns, node, flow in reader.feed(chunk):
                response = observer_pb2.GetFlowsResponse(node_name=node)
                response.flow.ParseFromString(flow)
                response.time.FromNanoseconds(ns)
                yield response
    finally:
        chunks.close()  # stopping early (--last N reached) drops the rest of the answer
