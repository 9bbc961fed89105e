"""dns_query: Hubble's DNS query filter (cilium pkg/hubble/filters/fqdn.go, filterByDNSQueries).

RE2 regular expressions searched (not anchored) in the query name of a DNS message, as the flow states it
(lower-case, with its trailing dot: `web\\.web\\.svc\\.lab\\.$`). Queries and responses both carry the query; a
flow without a DNS record matches none. The same test serves the agent's records (through their L7 store
entries) and decoded flows read from a file (observer/filters/messages.py).
"""

from __future__ import annotations

from collections.abc import Callable

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters import l7_rows
from flowscope.observer.filters.base import FilterContext, Predicate
from flowscope.observer.filters.http import searcher
from flowscope.observer.filters.regex import compile_regex

QueryTest = Callable[[str], bool]


def query_test(ff: flow_pb2.FlowFilter) -> QueryTest | None:
    """The test of a query name, or None when the filter sets no dns_query (FilterError for a bad pattern)."""
    if not ff.dns_query:
        return None
    return searcher([compile_regex(pattern, "dns query") for pattern in ff.dns_query])


def query_of(entry: l7_rows.L7Record) -> str | None:
    return entry.dns_query if entry.kind == "dns" else None


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    test = query_test(ff)
    return [] if test is None else [l7_rows.matching(ctx.l7, query_of, test)]


def flow_predicates(ff: flow_pb2.FlowFilter) -> list[Callable[[flow_pb2.Flow], bool]]:
    test = query_test(ff)
    if test is None:
        return []
    return [lambda flow: flow.l7.WhichOneof("record") == "dns" and test(flow.l7.dns.query)]
