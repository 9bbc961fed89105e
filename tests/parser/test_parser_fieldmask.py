"""Field masks by pruning: the same message as protobuf's FieldMask.MergeMessage, for much less."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2
from records import ACK, SYN, arp, lab_registry, record, tcp4, udp4

from flowscope.api.flow import flow_pb2
from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.parser import FlowDecoder, compile_field_mask

MASKS = [
    list(HUBBLE_FIELD_MASK),  # what `hubble observe` sends for its text formats
    ["uuid"],
    ["source", "source.labels"],
    ["l4.TCP.flags.SYN", "IP.source", "flowscope.truncated"],
    ["interface.name", "drop_reason_desc", "flowscope"],
    ["l4.TCP.flags", "destination.labels", "source.identity", "flowscope.packets"],
    ["l4.UDP", "is_reply.value", "time.nanos"],
]
RECORDS = [
    record(tcp4(flags=SYN | ACK), flags=events.F_REPLY_KNOWN),
    record(udp4(), len_cap=40),
    record(arp()),
    record(tcp4(), type=names.EVENT_DROP, verdict=names.VERDICT_DROPPED, drop_reason=133, subtype=133),
]


@pytest.mark.parametrize("paths", MASKS)
def test_pruning_equals_merge_message(paths: list[str]) -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"mask")
    mask = field_mask_pb2.FieldMask(paths=paths)
    fields = compile_field_mask(paths)
    for i, rec in enumerate(RECORDS):
        expected = flow_pb2.Flow()
        mask.MergeMessage(decoder.decode(rec[0], i), expected)
        assert decoder.decode(rec[0], i, fields) == expected


@pytest.mark.parametrize("path", ["nope", "source.nope", "uuid.length", "source.labels.x"])
def test_unknown_fields_are_an_error(path: str) -> None:
    with pytest.raises(ValueError):
        compile_field_mask([path])
