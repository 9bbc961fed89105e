"""Packet payload stays in the agent: the decoder reads the captured bytes for headers only, and no Flow field
(Hubble's or flowscope's own) carries them, whatever kind of event the record is."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from records import ACK, CLIENT_V4, PSH, SERVER_V4, ether, ipv4, lab_registry, record, tcp, udp

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.parser import FlowDecoder

SECRET = b"GET /secret?token=0123456789abcdef HTTP/1.1\r\n"
TCP_PACKET = ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(40000, 80, PSH | ACK, payload=SECRET * 2)))
UDP_PACKET = ether(ipv4(CLIENT_V4, SERVER_V4, 17, udp(40000, 53, SECRET * 2)))

KINDS: dict[str, dict[str, int]] = {
    "trace": {},
    "reply": {"flags": events.F_REPLY_KNOWN | events.F_REPLY},
    "aggregate": {"flags": events.F_AGGREGATE, "packets": 9},
    "policy drop": {"type": names.EVENT_DROP, "subtype": names.DROP_POLICY_DENIED, "verdict": names.VERDICT_DROPPED},
    "policy verdict": {"type": names.EVENT_POLICY_VERDICT, "verdict": names.VERDICT_DROPPED},
    "kernel drop": {"type": names.EVENT_DROP, "flags": events.F_KERNEL_DROP, "verdict": names.VERDICT_DROPPED},
    "to network": {"subtype": names.TRACE_TO_NETWORK},
}


def bytes_fields(descriptor: Descriptor, seen: set[str] | None = None) -> set[str]:
    """Every field of type bytes a message can reach, by full name."""
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return set()
    seen.add(descriptor.full_name)
    found = set()
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_BYTES:
            found.add(field.full_name)
        elif field.message_type is not None:
            found |= bytes_fields(field.message_type, seen)
    return found


def test_a_flow_has_no_bytes_field_but_the_unused_extensions_any() -> None:
    assert bytes_fields(flow_pb2.Flow.DESCRIPTOR) == {"google.protobuf.Any.value"}


@pytest.mark.parametrize("packet", [TCP_PACKET, UDP_PACKET], ids=["tcp", "udp"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_no_payload_byte_leaves_in_a_flow(kind: str, packet: bytes) -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"instance", {2: "NOT_SPECIFIED"})
    flow = decoder.decode(record(packet, **KINDS[kind])[0], 1)
    assert flow.IP.source == CLIENT_V4  # the headers were read from the same bytes
    assert not flow.HasField("extensions")
    wire = observer_pb2.GetFlowsResponse(flow=flow).SerializeToString()
    for piece in (SECRET[:8], SECRET[12:20], b"0123456789abcdef"):
        assert piece not in wire
    assert SECRET[:8].decode() not in str(flow)
