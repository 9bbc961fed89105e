"""L7 filters over gRPC: a real agent server over a ring of L7 records and its real L7 store, and a real relay
in front of it that passes the request's filter fields to the agent untouched.

Asked with the hubble CLI's default field mask, the flows keep what its compact line prints of an L7 flow
(l7, Summary, is_reply, event_type); a malformed L7 filter, or HTTP fields with event types that exclude L7,
is INVALID_ARGUMENT with the reason, from the agent and through the relay alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from records import CLIENT_V4, DNS_V4, SERVER_V4, record, tcp4, udp4
from served_records import agent_serving, relay_in_front

from flowscope.api.flow import flow_pb2 as pb
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
from flowscope.common import names
from flowscope.observer.l7.store import L7Entry, L7Store

URL = "http://web.web.svc.lab/status/500"


def http_entry(l7_type: int, code: int = 0) -> L7Entry:
    layer7 = pb.Layer7(type=l7_type, http=pb.HTTP(code=code, method="GET", url=URL, protocol="HTTP/1.1"))
    summary = f"HTTP/1.1 {code} 2ms (GET {URL})" if code else f"HTTP/1.1 GET {URL}"
    return L7Entry(layer7.SerializeToString(), summary, kind="http", l7_type=l7_type, http_code=code,
                   http_method="GET", http_url=URL, http_path="/status/500")  # fmt: skip


def dns_entry() -> L7Entry:
    layer7 = pb.Layer7(type=pb.REQUEST, dns=pb.DNS(query="web.web.svc.lab.", qtypes=["A"], observation_source="proxy"))
    return L7Entry(layer7.SerializeToString(), "DNS Query web.web.svc.lab. A", kind="dns", l7_type=pb.REQUEST,
                   dns_query="web.web.svc.lab.")  # fmt: skip


@pytest.fixture
def agent_socket() -> Iterator[Path]:
    """An agent's gRPC server: a packet, a DNS query, an HTTP request and its 500 response, in that order."""
    store = L7Store(capacity=16)
    l7 = {"type": names.EVENT_TYPES["l7"], "subtype": names.TRACE_FROM_LXC}
    batch = np.concatenate(
        [
            record(tcp4(CLIENT_V4, SERVER_V4, 41000, 80)),
            record(udp4(CLIENT_V4, DNS_V4), location=store.add(dns_entry()), **l7),
            record(tcp4(CLIENT_V4, SERVER_V4, 41000, 80), location=store.add(http_entry(pb.REQUEST)), **l7),
            record(tcp4(SERVER_V4, CLIENT_V4, 80, 41000), location=store.add(http_entry(pb.RESPONSE, 500)), **l7),
        ]
    )
    with agent_serving(batch, l7=store) as socket:
        yield socket


@pytest.fixture(params=["agent", "relay"])
def target(request: pytest.FixtureRequest, agent_socket: Path) -> Iterator[str]:
    """The agent itself, or a relay on a free localhost port whose one node is that agent."""
    if request.param == "agent":
        yield f"unix://{agent_socket}"
        return
    with relay_in_front(agent_socket) as relay:
        yield relay


def get_flows(target: str, *whitelist: pb.FlowFilter) -> list[pb.Flow]:
    request = observer_pb2.GetFlowsRequest(
        number=10, whitelist=whitelist, field_mask=FieldMask(paths=list(HUBBLE_FIELD_MASK))
    )
    with grpc.insecure_channel(target) as channel:
        responses = observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=10)
        return [r.flow for r in responses if r.HasField("flow")]


def test_http_status_selects_the_response_with_its_l7_fields(target: str) -> None:
    flows = get_flows(target, pb.FlowFilter(event_type=[pb.EventTypeFilter(type=129)], http_status_code=["5+"]))
    assert len(flows) == 1
    (flow,) = flows
    assert flow.Type == pb.L7 and flow.event_type.type == 129 and flow.verdict == pb.FORWARDED
    assert flow.l7.type == pb.RESPONSE and flow.l7.http.code == 500 and flow.l7.http.url == URL
    assert flow.is_reply.value and flow.Summary == f"HTTP/1.1 500 2ms (GET {URL})"


def test_each_l7_filter_reaches_the_agent(target: str) -> None:
    assert [f.Summary for f in get_flows(target, pb.FlowFilter(dns_query=[r"^web\."]))] == [
        "DNS Query web.web.svc.lab. A"
    ]
    assert len(get_flows(target, pb.FlowFilter(http_method=["get"], http_path=["^/status/5"]))) == 2
    assert len(get_flows(target, pb.FlowFilter(http_url=["status/404"]))) == 0
    assert len(get_flows(target, pb.FlowFilter(event_type=[pb.EventTypeFilter(type=129)]))) == 3
    assert [f.l7.WhichOneof("record") for f in get_flows(target, pb.FlowFilter(protocol=["dns"]))] == ["dns"]


@pytest.mark.parametrize(
    ("ff", "reason"),
    [
        (pb.FlowFilter(http_status_code=["600"]), "invalid http status code filter '600'"),
        (pb.FlowFilter(dns_query=["(unclosed"]), "invalid dns query filter '(unclosed'"),
        (
            pb.FlowFilter(event_type=[pb.EventTypeFilter(type=4)], http_method=["GET"]),
            "filtering by http method requires the event type filter to only match 'l7' events",
        ),
    ],
)
def test_bad_l7_filters_are_invalid_argument_with_the_reason(target: str, ff: pb.FlowFilter, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        get_flows(target, ff)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (raised.value.details() or "")
