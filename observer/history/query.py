"""A GetFlowsRequest as SQL over the flows table: its time window and the filters that map exactly onto columns.

Pushing a filter down only narrows what ClickHouse sends back; every filter is applied again on the decoded
flows afterwards (observer/filters/messages.py, Hubble's semantics), so a filter that does not map (labels,
FQDNs, CEL, HTTP paths, ...) is never ignored, only not pushed. The rules:

- an allow (whitelist) filter pushes down the conditions of the fields that map, AND'ed: a superset of what it
  matches; a filter with no such field matches everything, and so does the OR over the list then;
- a deny (blacklist) filter pushes down only when every field it sets maps exactly (NOT of a superset would
  drop flows the filter keeps);
- a --first/--last count becomes a LIMIT only when everything was pushed exactly; otherwise rows are read in
  order (newest first for --last) until enough of them passed the filters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.observer.filters.pod import parse_namespaced_names
from flowscope.observer.filters.port import parse_ports
from flowscope.observer.filters.protocol import protocol_names
from flowscope.observer.history.clickhouse import quote

ALL_FLOWS = 2**64 - 1
Condition = tuple[str, bool]  # (SQL, exact: true for exactly the flows the field's filter matches)


@dataclass(frozen=True)
class Query:
    sql: str
    exact: bool  # the WHERE clause selects exactly what the filters do: no need to count after filtering
    limit: int | None  # rows wanted after filtering (None: all)
    newest_first: bool  # rows come newest first (--last); the reader turns them around


def build(request: observer_pb2.GetFlowsRequest, table: str, columns: str = "time_ns, node, flow") -> Query:
    """The SELECT answering `request` from `table`; FilterError for a value no filter takes."""
    where: list[str] = []
    if request.HasField("since"):
        since = request.since.ToNanoseconds()
        where += [f"time_ns >= {since}", f"date >= toDate({since // 10**9})"]
    if request.HasField("until"):
        until = request.until.ToNanoseconds()
        where += [f"time_ns <= {until}", f"date <= toDate({until // 10**9})"]
    allow = [_filter(f) for f in request.whitelist]
    deny = [_filter(f) for f in request.blacklist]
    exact = all(e for _, e in allow) and all(e for _, e in deny)
    if allow and all(sql for sql, _ in allow):
        where.append("(" + " OR ".join(sql for sql, _ in allow) + ")")
    where += [f"NOT {sql}" for sql, e in deny if e and sql]
    number = request.number
    limit = number if number and number < ALL_FLOWS else None
    if limit is None and not request.first and not request.HasField("since") and not number:
        limit = 20  # Hubble's default: the last 20
    newest_first = limit is not None and not request.first
    order = "time_ns DESC" if newest_first else "time_ns"
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order}"
    if exact and limit is not None:
        sql += f" LIMIT {limit}"
    return Query(sql + " FORMAT RowBinary", exact, limit, newest_first)


def where_clause(request: observer_pb2.GetFlowsRequest) -> str:
    """Only the WHERE part (time and filters), for other queries over the same window (top's aggregation)."""
    sql = build(request, "flows", "1").sql
    return sql.split(" WHERE ", 1)[1].split(" ORDER BY ")[0] if " WHERE " in sql else "1"


def _filter(ff: flow_pb2.FlowFilter) -> tuple[str, bool]:
    """One FlowFilter: the AND of its pushed conditions (empty: none) and whether that is exact."""
    conditions: list[Condition] = []
    pushed: set[str] = set()
    for field_name, push in _PUSHERS.items():
        if getattr(ff, field_name):
            conditions.append(push(ff))
            pushed.add(field_name)
    set_fields = {field.name for field, _ in ff.ListFields()}
    exact = set_fields <= pushed and all(e for _, e in conditions)
    return " AND ".join(f"({sql})" for sql, _ in conditions), exact


def _in(column: str, values: Iterable[object]) -> str:
    items = sorted({quote(v) if isinstance(v, str) else str(int(v)) for v in values})  # type: ignore[call-overload]
    return f"{column} IN ({', '.join(items)})"


def _pods(side: str) -> Callable[[flow_pb2.FlowFilter], Condition]:
    def push(ff: flow_pb2.FlowFilter) -> Condition:
        pairs = parse_namespaced_names(getattr(ff, f"{side}_pod"), f"{side} pod")
        ors = [
            f"({side}_namespace = {quote(ns)} AND {side}_pod != ''"
            + (f" AND startsWith({side}_pod, {quote(prefix)})" if prefix else "")
            + ")"
            for ns, prefix in pairs
        ]
        return " OR ".join(ors), True

    return push


def _ips(side: str) -> Callable[[flow_pb2.FlowFilter], Condition]:
    def push(ff: flow_pb2.FlowFilter) -> Condition:
        values = list(getattr(ff, f"{side}_ip"))
        plain = []
        for value in values:
            try:
                plain.append(str(ipaddress.ip_address(value)))
            except ValueError:
                return "1", False  # a CIDR: matched after the query
        return _in(f"{side}_ip", plain), True

    return push


def _ports(side: str) -> Callable[[flow_pb2.FlowFilter], Condition]:
    def push(ff: flow_pb2.FlowFilter) -> Condition:
        ports = parse_ports(getattr(ff, f"{side}_port"), f"{side} port").tolist()
        return f"{_in(f'{side}_port', ports)} AND l4 IN ('TCP', 'UDP', 'SCTP')", True

    return push


def _column(column: str, field_name: str) -> Callable[[flow_pb2.FlowFilter], Condition]:
    return lambda ff: (_in(column, getattr(ff, field_name)), True)


def _protocol(ff: flow_pb2.FlowFilter) -> Condition:
    kinds: set[str] = set()
    for lowered in protocol_names(ff):
        kinds |= {"icmpv4", "icmpv6"} if lowered == "icmp" else {lowered}
    return f"({_in('lower(l4)', kinds)} OR {_in('lower(l7)', kinds)})", True


def _event_type(ff: flow_pb2.FlowFilter) -> Condition:
    ors = [
        f"(event_type = {t.type}" + (f" AND event_subtype = {t.sub_type}" if t.match_sub_type else "") + ")"
        for t in ff.event_type
    ]
    return " OR ".join(ors), True


def _reply(ff: flow_pb2.FlowFilter) -> Condition:
    return _in("is_reply", {1 if r else 0 for r in ff.reply}), True


def _uuid(ff: flow_pb2.FlowFilter) -> Condition:
    return _in("lower(uuid)", {u.lower() for u in ff.uuid}), True


_PUSHERS: dict[str, Callable[[flow_pb2.FlowFilter], Condition]] = {
    "source_pod": _pods("source"),
    "destination_pod": _pods("destination"),
    "source_ip": _ips("source"),
    "destination_ip": _ips("destination"),
    "source_port": _ports("source"),
    "destination_port": _ports("destination"),
    "source_identity": _column("source_identity", "source_identity"),
    "destination_identity": _column("destination_identity", "destination_identity"),
    "verdict": _column("verdict", "verdict"),
    "drop_reason_desc": _column("drop_reason", "drop_reason_desc"),
    "traffic_direction": _column("traffic_direction", "traffic_direction"),
    "ip_version": _column("ip_version", "ip_version"),
    "protocol": _protocol,
    "event_type": _event_type,
    "reply": _reply,
    "uuid": _uuid,
}
