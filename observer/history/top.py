"""Who talked most in a window of the history: flows counted per (source, destination, protocol/port,
verdict), with the first and last time seen, for `flowscope top --history`.

One GROUP BY in ClickHouse when every filter pushes down exactly (observer/history/query.py); otherwise the
window's flows are read back, filtered with Hubble's semantics and counted here, so no filter is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.history.clickhouse import ClickHouse
from flowscope.observer.history.query import ALL_FLOWS, build, where_clause
from flowscope.observer.history.reader import responses


@dataclass(frozen=True)
class Talker:
    source: str
    destination: str
    protocol: str  # "TCP/80", "ICMPv4", "UDP/53"
    verdict: str
    flows: int
    first_ns: int
    last_ns: int


def _endpoint(side: str) -> str:
    return f"if({side}_pod != '', concat({side}_namespace, '/', {side}_pod), {side}_ip)"


def top_talkers(client: ClickHouse, request: observer_pb2.GetFlowsRequest, table: str, rows: int = 20) -> list[Talker]:
    """The `rows` busiest (source, destination, protocol/port, verdict) of the request's window and filters."""
    window = observer_pb2.GetFlowsRequest()
    window.CopyFrom(request)
    window.number, window.first = ALL_FLOWS, False  # every flow of the window counts, not the last N
    keep = compile_flow_filters(window.whitelist, window.blacklist)  # refuses bad filters before any query
    if build(window, table).exact:
        return _aggregated(client, window, table, rows)
    counted = _count(r for r in responses(client, window, table) if keep(r.flow))
    return sorted(counted, key=lambda t: (-t.flows, -t.last_ns))[:rows]


def _aggregated(client: ClickHouse, request: observer_pb2.GetFlowsRequest, table: str, rows: int) -> list[Talker]:
    protocol = "if(l4 IN ('TCP', 'UDP', 'SCTP'), concat(l4, '/', toString(destination_port)), l4)"
    sql = (
        f"SELECT {_endpoint('source')} AS src, {_endpoint('destination')} AS dst, {protocol} AS proto, verdict, "
        f"count() AS flows, min(time_ns), max(time_ns) FROM {table} WHERE {where_clause(request)} "
        f"GROUP BY src, dst, proto, verdict ORDER BY flows DESC, max(time_ns) DESC LIMIT {rows} "
        "FORMAT TabSeparated"
    )
    talkers = []
    for line in client.execute(sql).decode().splitlines():
        src, dst, proto, verdict, flows, first, last = line.split("\t")
        talkers.append(Talker(src, dst, proto, flow_pb2.Verdict.Name(int(verdict)), int(flows), int(first), int(last)))
    return talkers


def _count(selected: Iterable[observer_pb2.GetFlowsResponse]) -> list[Talker]:
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for response in selected:
        f = response.flow
        ns = response.time.ToNanoseconds()
        key = (_name(f.source, f.IP.source), _name(f.destination, f.IP.destination), _protocol(f), _verdict(f))
        group = groups.setdefault(key, [0, ns, ns])
        group[0] += 1
        group[1], group[2] = min(group[1], ns), max(group[2], ns)
    return [Talker(*key, *counts) for key, counts in groups.items()]


def _name(endpoint: flow_pb2.Endpoint, ip: str) -> str:
    return f"{endpoint.namespace}/{endpoint.pod_name}" if endpoint.pod_name else ip


def _protocol(f: flow_pb2.Flow) -> str:
    kind = f.l4.WhichOneof("protocol") or ""
    return f"{kind}/{getattr(f.l4, kind).destination_port}" if kind in ("TCP", "UDP", "SCTP") else kind


def _verdict(f: flow_pb2.Flow) -> str:
    return flow_pb2.Verdict.Name(f.verdict)
