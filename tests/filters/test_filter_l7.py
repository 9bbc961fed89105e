"""L7 filters (http_*, dns_query) over real records and a real L7 store, and the same over decoded flows.

Each L7 record is what the agent stores: a type-129 record whose `location` is the sequence number of its entry
in the L7 store. The entries are made from flow.Layer7 messages, the columns filled from the message as the
agent fills them, so the flows read back from a file (messages.py) carry exactly the same Layer7 and every case
is checked on both paths.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence

import numpy as np
import pytest
from filter_cases import context
from records import CLIENT_V4, DNS_V4, SERVER_V4, batch_of, record, tcp4, udp4

from flowscope.api.flow import flow_pb2 as pb
from flowscope.common import names
from flowscope.observer.filters import Batch, FilterContext, FilterError, compile_filters
from flowscope.observer.filters.http import url_path
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.l7.store import L7Entry, L7Store

EVENT_L7 = names.EVENT_TYPES["l7"]


def dns(l7_type: int, query: str, rcode: int = 0, ips: tuple[str, ...] = ()) -> pb.Layer7:
    message = pb.DNS(query=query, qtypes=["A"], rcode=rcode, ips=ips, observation_source="proxy")
    return pb.Layer7(type=l7_type, dns=message, latency_ns=1_000_000 if l7_type == pb.RESPONSE else 0)


def http(l7_type: int, method: str, url: str, code: int = 0, headers: dict[str, str] | None = None) -> pb.Layer7:
    kept = [pb.HTTPHeader(key=key, value=value) for key, value in (headers or {}).items()]
    message = pb.HTTP(code=code, method=method, url=url, protocol="HTTP/1.1", headers=kept)
    return pb.Layer7(type=l7_type, http=message)


MESSAGES: dict[str, pb.Layer7] = {
    "dns_query": dns(pb.REQUEST, "web.web.svc.lab."),
    "dns_answer": dns(pb.RESPONSE, "web.web.svc.lab.", ips=("10.200.1.12",)),
    "nxdomain": dns(pb.RESPONSE, "nothing.lab.", rcode=3),
    "get_404": http(pb.REQUEST, "GET", "/status/404?HUBBLE_REDACTED", headers={"X-Request-Id": "abc"}),
    "resp_404": http(pb.RESPONSE, "GET", "/status/404?HUBBLE_REDACTED", code=404),
    "post_500": http(pb.RESPONSE, "POST", "http://web.web.svc.lab/api/items", code=500),
    "resp_200": http(pb.RESPONSE, "get", "/", code=200, headers={"content-type": "text/html"}),
    "resp_301": http(pb.RESPONSE, "GET", "/a%20b/c", code=301),
}


def entry_of(layer7: pb.Layer7) -> L7Entry:
    """The store entry the agent makes of a message: the serialized Layer7 and the columns filters read."""
    kind = layer7.WhichOneof("record") or ""
    return L7Entry(
        layer7=layer7.SerializeToString(),
        summary="",
        kind=kind,
        l7_type=layer7.type,
        dns_query=layer7.dns.query,
        dns_rcode=layer7.dns.rcode,
        http_code=layer7.http.code,
        http_method=layer7.http.method,
        http_url=layer7.http.url,
        http_path=url_path(layer7.http.url) or "",
        http_headers=tuple((h.key, h.value) for h in layer7.http.headers),
    )


STORE = L7Store(capacity=64)
SEQS = {name: STORE.add(entry_of(message)) for name, message in MESSAGES.items()}
L7_RECORDS = {
    name: record(
        udp4(CLIENT_V4, DNS_V4) if message.HasField("dns") else tcp4(CLIENT_V4, SERVER_V4, 40000, 80),
        type=EVENT_L7,
        subtype=names.TRACE_FROM_LXC,
        location=SEQS[name],
    )
    for name, message in MESSAGES.items()
}
OTHERS = {
    "trace_http": record(tcp4(CLIENT_V4, SERVER_V4, 40000, 80)),  # the packet of a request: no L7 of its own
    "trace_dns": record(udp4(CLIENT_V4, DNS_V4)),
    "evicted": record(tcp4(), type=EVENT_L7, subtype=names.TRACE_FROM_LXC, location=10_000),  # gone from the store
}
ALL = {**L7_RECORDS, **OTHERS}
NAMES = list(ALL)
RECORDS = batch_of(list(ALL.values()))
CTX = dataclasses.replace(context(), l7=STORE)


def flow_of(name: str) -> pb.Flow:
    """The flow the decoder sends for a record, as far as these filters look at it."""
    row = ALL[name][0]
    flow = pb.Flow(event_type=pb.CiliumEventType(type=int(row["type"])))
    ports = {"source_port": int(row["sport"]), "destination_port": int(row["dport"])}
    if row["l4_proto"] == 6:
        flow.l4.TCP.CopyFrom(pb.TCP(**ports))
    elif row["l4_proto"] == 17:
        flow.l4.UDP.CopyFrom(pb.UDP(**ports))
    if name in MESSAGES:
        flow.l7.CopyFrom(pb.Layer7.FromString(STORE.get(SEQS[name]).layer7))  # type: ignore[union-attr]
    return flow


def selected(
    whitelist: Sequence[pb.FlowFilter], blacklist: Sequence[pb.FlowFilter] = (), ctx: FilterContext = CTX
) -> list[str]:
    """The records the agent selects, after checking a flow read from a file is selected alike."""
    mask = compile_filters(whitelist, blacklist, ctx)(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64)))
    agent = [NAMES[row] for row in np.flatnonzero(mask)]
    offline = compile_flow_filters(whitelist, blacklist)
    assert [name for name in NAMES if offline(flow_of(name))] == agent
    return agent


def only(**fields: object) -> list[str]:
    return selected([pb.FlowFilter(**fields)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["404"], ["resp_404"]),
        (["5+"], ["post_500"]),
        (["40+"], ["resp_404"]),
        (["2+", "301"], ["resp_200", "resp_301"]),
        (["1+"], []),
    ],
)
def test_http_status_matches_responses_by_code_or_prefix(codes: list[str], expected: list[str]) -> None:
    assert only(http_status_code=codes) == expected


def test_http_method_is_case_insensitive_and_responses_carry_their_request_method() -> None:
    assert only(http_method=["get"]) == ["get_404", "resp_404", "resp_200", "resp_301"]
    assert only(http_method=["POST", "PUT"]) == ["post_500"]


def test_http_path_is_searched_in_the_decoded_path_of_the_url() -> None:
    assert only(http_path=["^/status/[0-9]+$"]) == ["get_404", "resp_404"]
    assert only(http_path=["^/api/"]) == ["post_500"]  # the path of an absolute URL
    assert only(http_path=["^/a b/"]) == ["resp_301"]  # percent-decoded, as Go's url.URL.Path
    assert only(http_path=["REDACTED"]) == []  # the query is no part of the path


def test_http_url_is_searched_in_the_url_as_sent() -> None:
    assert only(http_url=["HUBBLE_REDACTED"]) == ["get_404", "resp_404"]
    assert only(http_url=["^http://web"]) == ["post_500"]


def test_http_header_matches_name_case_insensitively_and_value_exactly() -> None:
    assert only(http_header=[pb.HTTPHeader(key="x-request-id", value="abc")]) == ["get_404"]
    assert only(http_header=[pb.HTTPHeader(key="X-REQUEST-ID", value="ABC")]) == []
    assert only(http_header=[pb.HTTPHeader(key="content-type", value="text/html")]) == ["resp_200"]


def test_dns_query_is_searched_in_queries_and_responses() -> None:
    assert only(dns_query=[r"^web\.web\."]) == ["dns_query", "dns_answer"]
    assert only(dns_query=["nothing"]) == ["nxdomain"]
    assert only(dns_query=[""]) == ["dns_query", "dns_answer", "nxdomain"]  # every DNS flow, nothing else


def test_fields_of_one_filter_are_anded_and_filters_ored() -> None:
    assert only(http_method=["GET"], http_status_code=["4+"]) == ["resp_404"]
    either = [pb.FlowFilter(http_status_code=["5+"]), pb.FlowFilter(dns_query=["nothing"])]
    assert selected(either) == ["nxdomain", "post_500"]


def test_flows_without_l7_never_match_and_are_kept_by_an_exclusion() -> None:
    everything_l7 = [pb.FlowFilter(http_url=[""]), pb.FlowFilter(dns_query=[""])]
    assert selected(everything_l7) == list(MESSAGES)  # not the packets, not the evicted entry
    assert selected([], [pb.FlowFilter(http_status_code=["404"])]) == [n for n in NAMES if n != "resp_404"]


def test_without_a_store_no_record_matches() -> None:
    assert selected([pb.FlowFilter(event_type=[pb.EventTypeFilter(type=EVENT_L7)])], ctx=context()) == [
        *MESSAGES,
        "evicted",
    ]
    mask = compile_filters([pb.FlowFilter(http_method=["GET"])], [], context())(Batch(RECORDS, np.zeros(len(RECORDS))))
    assert not mask.any()


def test_type_l7_selects_the_l7_records() -> None:
    assert only(event_type=[pb.EventTypeFilter(type=EVENT_L7)]) == [*MESSAGES, "evicted"]
    with_l7 = [pb.EventTypeFilter(type=names.EVENT_TRACE), pb.EventTypeFilter(type=EVENT_L7)]
    assert only(event_type=with_l7, http_status_code=["404"]) == ["resp_404"]


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"http_status_code": ["404"]}, "http status code"),
        ({"http_method": ["GET"]}, "http method"),
        ({"http_path": ["/"]}, "http path"),
        ({"http_url": ["/"]}, "http url"),
        ({"http_header": [pb.HTTPHeader(key="a", value="b")]}, "http headers"),
    ],
)
def test_http_fields_with_event_types_excluding_l7_are_refused_as_hubble_does(
    fields: dict[str, object], what: str
) -> None:
    ff = pb.FlowFilter(event_type=[pb.EventTypeFilter(type=names.EVENT_TRACE)], **fields)  # type: ignore[arg-type]
    message = f"filtering by {what} requires the event type filter to only match 'l7' events"
    with pytest.raises(FilterError, match=message):
        compile_filters([ff], [], CTX)
    with pytest.raises(FilterError, match=message):
        compile_flow_filters([ff], [])


@pytest.mark.parametrize("code", ["600", "5", "5++", "099", "40x", "+"])
def test_malformed_status_codes_are_refused(code: str) -> None:
    with pytest.raises(FilterError, match=re.escape(f"invalid http status code filter '{code}'")):
        compile_filters([pb.FlowFilter(http_status_code=[code])], [], CTX)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/status/404?x=1", "/status/404"),
        ("http://web.web.svc.lab/a/b?HUBBLE_REDACTED", "/a/b"),
        ("http://web.web.svc.lab", ""),
        ("https://host:8443/%7Euser", "/~user"),
        ("*", "*"),
        ("mailto:someone", ""),
        ("status/404", None),
        ("", None),
        ("1http://x/", None),
    ],
)
def test_url_path_reads_a_request_uri_as_go_does(url: str, path: str | None) -> None:
    assert url_path(url) == path


def test_protocol_names_an_l7_kind_as_hubble_does() -> None:
    dns_flows, http_flows = (
        ["dns_query", "dns_answer", "nxdomain"],
        [n for n in MESSAGES if n.startswith(("get", "resp", "post"))],
    )
    assert only(protocol=["DNS"]) == dns_flows
    assert only(protocol=["http"]) == http_flows
    assert only(protocol=["kafka"]) == []
    assert only(protocol=["udp"]) == [*dns_flows, "trace_dns"]  # an L7 flow has its L4 too
    assert only(protocol=["dns", "tcp"]) == [*dns_flows, *http_flows, "trace_http", "evicted"]


def test_l7_filters_over_a_full_ring_with_one_l7_record_in_ten_stay_fast() -> None:
    """The entries are looked up once per batch, only for L7 rows; ~20 ms here; the budget is generous."""
    packets = np.resize(RECORDS[[NAMES.index("trace_http"), NAMES.index("trace_dns")]], 58_982)
    records = np.concatenate([packets, np.resize(RECORDS[: len(MESSAGES)], 6_553)])
    seqs = np.arange(len(records), dtype=np.uint64)
    either = [pb.FlowFilter(http_status_code=["5+"], http_method=["POST"]), pb.FlowFilter(dns_query=["^nothing"])]
    predicate = compile_filters(either, [], CTX)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        mask = predicate(Batch(records, seqs))
        best = min(best, (time.perf_counter() - start) * 1e3)
    assert mask.sum() == sum(name in ("post_500", "nxdomain") for name in np.resize(list(MESSAGES), 6_553))
    assert best < 150, f"{best:.1f} ms"


def test_an_l7_flow_has_sub_type_0_whatever_point_its_record_was_seen_at() -> None:
    l7_at_0 = pb.EventTypeFilter(type=EVENT_L7, sub_type=0, match_sub_type=True)
    assert only(event_type=[l7_at_0]) == [*MESSAGES, "evicted"]
    from_endpoint = pb.EventTypeFilter(type=EVENT_L7, sub_type=names.TRACE_FROM_LXC, match_sub_type=True)
    assert only(event_type=[from_endpoint]) == []
