"""source_service / destination_service: over stored records, over decoded flows (files), and the two agree."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from filter_cases import INSTANCE, context
from records import ACK, CLIENT_V4, NODE1_V4, SERVER_V4, SYN, record, tcp4, udp4
from service_records import (
    EMPTY_V4,
    KUBE_DNS_V4,
    SERVICES_LAB,
    WEB_V4,
    frontend_id,
    services_registry,
    translated,
)

from flowscope.api.flow import flow_pb2 as pb
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.filters import Batch, FilterError, compile_filters
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.parser import FlowDecoder

KNOWN, REPLY = events.F_REPLY_KNOWN, events.F_REPLY | events.F_REPLY_KNOWN
WEB_ID = frontend_id(WEB_V4, 80)
BACKEND_REPLY = tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK)

ZOO = {
    "to_clusterip": translated(tcp4(CLIENT_V4, WEB_V4), WEB_ID, flags=KNOWN),
    "to_backend": translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN),
    "backend_reply": translated(BACKEND_REPLY, WEB_ID, flags=REPLY),
    "clusterip_reply": translated(tcp4(WEB_V4, CLIENT_V4, 80, 40000, SYN | ACK), WEB_ID, flags=REPLY),
    "dns_query": record(udp4(CLIENT_V4, KUBE_DNS_V4), flags=KNOWN),
    "dns_answer": record(udp4(KUBE_DNS_V4, CLIENT_V4, 53, 40000), flags=REPLY),
    "nodeport": record(tcp4(CLIENT_V4, NODE1_V4, 40000, 30080)),
    "no_backend": translated(
        tcp4(CLIENT_V4, EMPTY_V4),
        frontend_id(EMPTY_V4, 80),
        type=names.EVENT_DROP,
        subtype=names.DROP_SERVICE_BACKEND_NOT_FOUND,
        verdict=names.VERDICT_DROPPED,
    ),
    "direct": record(tcp4(CLIENT_V4, SERVER_V4), flags=KNOWN),
    "unknown_id": translated(tcp4(CLIENT_V4, SERVER_V4), 0x12345, flags=KNOWN),
}
NAMES = list(ZOO)
RECORDS = np.concatenate(list(ZOO.values()))


def select(**fields: list[str]) -> list[str]:
    predicate = compile_filters([pb.FlowFilter(**fields)], [], context(services_registry()))
    mask = predicate(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64)))
    return [NAMES[row] for row in np.flatnonzero(mask)]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"destination_service": ["default/web"]},
            ["to_clusterip", "to_backend", "nodeport"],  # "web" is a prefix of web-np
        ),
        ({"destination_service": ["web"]}, ["to_clusterip", "to_backend", "nodeport"]),
        ({"destination_service": ["default/web-"]}, ["nodeport"]),
        ({"destination_service": ["default/empty"]}, ["no_backend"]),
        ({"destination_service": ["default/"]}, ["to_clusterip", "to_backend", "nodeport", "no_backend"]),
        ({"destination_service": ["kube-system/"]}, ["dns_query"]),
        ({"destination_service": ["kube-dns"]}, []),  # a bare name is in "default"
        ({"source_service": ["default/web"]}, ["backend_reply", "clusterip_reply"]),
        ({"source_service": ["kube-system/kube-dns"]}, ["dns_answer"]),
        ({"source_service": ["kube-system/kube-dns", "default/"]}, ["backend_reply", "clusterip_reply", "dns_answer"]),
        ({"source_service": ["default/web"], "destination_service": ["default/web"]}, []),
    ],
)
def test_selects(fields: dict[str, list[str]], expected: list[str]) -> None:
    assert select(**fields) == expected


def test_records_and_decoded_flows_agree() -> None:
    """The record filters select exactly the flows that Hubble's rule, applied to the decoded flow, selects."""
    decoder = FlowDecoder("node1", services_registry(), INSTANCE)
    flows = [decoder.decode(row, i) for i, row in enumerate(RECORDS)]
    for fields in (
        {"destination_service": ["default/web"]},
        {"destination_service": ["kube-system/"]},
        {"source_service": ["default/"]},
        {"source_service": ["kube-system/kube-dns"]},
    ):
        on_flows = compile_flow_filters([pb.FlowFilter(**fields)], [])  # type: ignore[arg-type]
        assert select(**fields) == [name for name, flow in zip(NAMES, flows, strict=True) if on_flows(flow)]


def test_a_cluster_without_services_selects_nothing() -> None:
    predicate = compile_filters([pb.FlowFilter(destination_service=["default/"])], [], context())
    assert not predicate(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64))).any()


def test_follows_the_registry() -> None:
    """A stream compiled before the service existed selects its flows once the cluster has it."""
    registry = services_registry()
    registry.update(replace(SERVICES_LAB, services=()))
    ctx = replace(context(registry), snapshots=lambda: registry.snapshot)
    predicate = compile_filters([pb.FlowFilter(destination_service=["kube-system/kube-dns"])], [], ctx)
    batch = Batch(ZOO["dns_query"], np.zeros(1, dtype=np.uint64))
    assert not predicate(batch).any()
    registry.update(SERVICES_LAB)
    assert predicate(Batch(ZOO["dns_query"], np.zeros(1, dtype=np.uint64))).all()


@pytest.mark.parametrize("field", ["source_service", "destination_service"])
def test_bad_values(field: str) -> None:
    what = field.replace("_", " ")
    with pytest.raises(FilterError, match=f"invalid {what} filter"):
        select(**{field: [""]})
    with pytest.raises(FilterError, match=f"invalid {what} filter 'a/b/c'"):
        select(**{field: ["a/b/c"]})
    with pytest.raises(FilterError, match=f"invalid {what} filter"):
        compile_flow_filters([pb.FlowFilter(**{field: [""]})], [])  # type: ignore[arg-type]
