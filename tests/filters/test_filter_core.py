"""Composition: whitelist OR, blacklist, fields ANDed inside a FlowFilter, values ORed inside a field."""

from __future__ import annotations

import numpy as np
from filter_cases import NAMES, RECORDS, context, lost_record, select
from records import batch_of

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.filters import Batch, FilterContext, compile_filters

TCP = pb.FlowFilter(protocol=["tcp"])
UDP = pb.FlowFilter(protocol=["udp"])
DROPPED = pb.FlowFilter(verdict=[pb.DROPPED])


def test_no_filters_select_everything() -> None:
    assert select() == NAMES


def test_an_empty_flow_filter_matches_every_flow() -> None:
    assert select([pb.FlowFilter()]) == NAMES
    assert select(blacklist=[pb.FlowFilter()]) == []


def test_whitelist_filters_are_ored() -> None:
    tcp, udp = select([TCP]), select([UDP])
    assert select([TCP, UDP]) == sorted(tcp + udp, key=NAMES.index)
    assert "dns" in udp and "syn" in tcp


def test_fields_of_one_filter_are_anded_and_values_of_one_field_ored() -> None:
    assert select([pb.FlowFilter(protocol=["tcp"], verdict=[pb.DROPPED])]) == ["denied"]
    assert select([pb.FlowFilter(protocol=["tcp", "udp"], verdict=[pb.DROPPED])]) == ["denied", "kernel"]


def test_blacklist_removes_from_the_whitelist() -> None:
    assert select([TCP], [DROPPED]) == [name for name in select([TCP]) if name != "denied"]
    assert select(blacklist=[TCP, UDP]) == [name for name in NAMES if name not in select([TCP, UDP])]


def test_a_batch_with_lost_records_and_an_empty_batch() -> None:
    records = batch_of(RECORDS, lost_record())
    predicate = compile_filters([TCP], [DROPPED], context())
    mask = predicate(Batch(records, np.arange(len(records), dtype=np.uint64)))
    assert mask.shape == (len(records),)
    empty = RECORDS[:0]
    assert predicate(Batch(empty, np.zeros(0, dtype=np.uint64))).shape == (0,)


def test_the_server_way_of_calling() -> None:
    """Batch(records, seqs) positionally, FilterContext by keyword, as observer.server does."""
    ctx = FilterContext(node_name="node1", cluster_name="lab", snapshot=context().snapshot)
    predicate = compile_filters([TCP], [], ctx)
    assert predicate(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64))).sum() == len(select([TCP]))
