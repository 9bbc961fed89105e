"""source_fqdn / destination_fqdn over stored records (name-set ids) and over decoded flows, as Hubble reads them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from filter_cases import context, select
from records import ACK, CLIENT_V4, DNS_V4, SERVER_V4, SYN, WORLD_V4, batch_of, record, tcp4, udp4

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer import events
from flowscope.observer.filters import Batch, FilterContext, FilterError, compile_filters
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.l7.names import NameSets

SETS = NameSets()
WEB = SETS.intern(("web.web.svc.lab",))
API = SETS.intern(("api.example.com", "edge.example-cdn.net"))
UNDER = SETS.intern(("under_score.lab",))
REPLY = events.F_REPLY | events.F_REPLY_KNOWN

# row -> (what it is); names as the ingest thread attached them.
RECORDS = batch_of(
    [
        record(tcp4(flags=SYN), dst_names=WEB),  # 0: client -> web
        record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY, src_names=WEB),  # 1: web's reply
        record(tcp4(CLIENT_V4, WORLD_V4, 40001, 443), dst_names=API),  # 2: client -> api
        record(udp4(CLIENT_V4, DNS_V4)),  # 3: no names
        record(tcp4(CLIENT_V4, WORLD_V4, 40002, 443), dst_names=UNDER),  # 4
        record(tcp4(CLIENT_V4, WORLD_V4, 40003, 443), dst_names=0xFFFF_FFF0),  # 5: an id long evicted
    ]
)


def ctx(names: NameSets | None = SETS) -> FilterContext:
    return dataclasses.replace(context(), names=names)


def rows(
    *filters: pb.FlowFilter, blacklist: tuple[pb.FlowFilter, ...] = (), names: NameSets | None = SETS
) -> list[int]:
    return [int(row) for row in select(list(filters), list(blacklist), records=RECORDS, ctx=ctx(names))]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["web.web.svc.lab"], [0]),
        (["WEB.web.svc.lab."], [0]),  # lower-cased, the trailing dot dropped, as Hubble does
        (["*.svc.lab"], [0]),
        (["*"], [0, 2, 4]),
        (["web.*"], [0]),
        (["*.lab"], [0, 4]),
        (["*example*"], [2]),  # any of a flow's names may match
        (["edge.example-cdn.net"], [2]),
        (["svc.lab"], []),  # the whole name must match
        (["web.web.svc"], []),
        (["web.web.svc.lab", "api.example.com"], [0, 2]),  # patterns of one field are ORed
        ([" web.web.svc.lab "], [0]),
    ],
)
def test_destination_fqdn(patterns: list[str], expected: list[int]) -> None:
    assert rows(pb.FlowFilter(destination_fqdn=patterns)) == expected


def test_source_fqdn_matches_the_names_of_the_source() -> None:
    assert rows(pb.FlowFilter(source_fqdn=["*.svc.lab"])) == [1]


def test_fqdn_is_either_side_as_hubble_sends_it() -> None:
    both = (pb.FlowFilter(source_fqdn=["web.web.svc.lab"]), pb.FlowFilter(destination_fqdn=["web.web.svc.lab"]))
    assert rows(*both) == [0, 1]


def test_fqdn_combines_with_other_fields_and_can_exclude() -> None:
    assert rows(pb.FlowFilter(destination_fqdn=["*"], destination_port=["443"])) == [2, 4]
    assert rows(blacklist=(pb.FlowFilter(destination_fqdn=["*.lab"]),)) == [1, 2, 3, 5]


def test_without_name_sets_no_record_has_names() -> None:
    assert rows(pb.FlowFilter(destination_fqdn=["*"]), names=None) == []


def test_each_name_set_is_judged_once_per_filter() -> None:
    judged: list[int] = []

    class CountingSets(NameSets):
        def names(self, set_id: int) -> tuple[str, ...]:
            judged.append(set_id)
            return SETS.names(set_id)

    predicate = compile_filters([pb.FlowFilter(destination_fqdn=["*.lab"])], [], ctx(CountingSets()))
    many = np.concatenate([RECORDS] * 1000)
    for _ in range(3):
        mask = predicate(Batch(many, np.arange(len(many), dtype=np.uint64)))
    assert int(mask.sum()) == 2000
    assert sorted(judged) == sorted({WEB, API, UNDER, 0xFFFF_FFF0})


@pytest.mark.parametrize(
    ("field", "pattern", "message"),
    [
        ("destination_fqdn", "exa mple.com", "invalid destination FQDN filter"),
        ("source_fqdn", "", "invalid source FQDN filter"),
        ("source_fqdn", ".", "invalid source FQDN filter"),
        ("destination_fqdn", "a/b", "invalid destination FQDN filter"),
        ("destination_fqdn", "[a-z]+.lab", "invalid destination FQDN filter"),
    ],
)
def test_bad_patterns_are_refused(field: str, pattern: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        rows(pb.FlowFilter(**{field: [pattern]}))
    with pytest.raises(FilterError, match=message):
        compile_flow_filters([pb.FlowFilter(**{field: [pattern]})], [])


def flow(source: list[str] = [], destination: list[str] = []) -> pb.Flow:  # noqa: B006 (never mutated)
    return pb.Flow(source_names=source, destination_names=destination)


def test_flows_read_from_a_file_are_filtered_by_their_names_alike() -> None:
    flows = [flow(destination=["web.web.svc.lab"]), flow(source=["web.web.svc.lab"]), flow(["a.example.com"]), flow()]
    for patterns, expected in ((["*.svc.lab"], [0]), (["WEB.web.svc.lab."], [0]), (["*"], [0]), (["svc.lab"], [])):
        passes = compile_flow_filters([pb.FlowFilter(destination_fqdn=patterns)], [])
        assert [i for i, f in enumerate(flows) if passes(f)] == expected
    either = compile_flow_filters([pb.FlowFilter(source_fqdn=["*.lab"]), pb.FlowFilter(destination_fqdn=["*.lab"])], [])
    assert [i for i, f in enumerate(flows) if either(f)] == [0, 1]
