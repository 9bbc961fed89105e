"""The GetFlows answer in wire bytes is, byte for byte, the GetFlowsResponse messages the decoder's flows make."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.wrappers_pb2 import UInt64Value
from records import (
    ACK,
    CLIENT,
    CLIENT_V6,
    IFINDEX,
    PSH,
    SERVER_V6,
    SYN,
    TS,
    WORLD_V4,
    batch_of,
    ether,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    lab_registry,
    lost_record,
    record,
    tcp,
    tcp4,
    udp4,
)

from flowscope.api.observer import observer_pb2
from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
from flowscope.common import names
from flowscope.common.protowire import varint
from flowscope.observer import events
from flowscope.observer.filters import FilterContext
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.parser.wire import ResponseWriter, timestamp
from flowscope.observer.server.getflows import FlowReader, select

REGISTRY = lab_registry()
DECODER = FlowDecoder("node1", REGISTRY, b"wire", {3: "NO_SOCKET"})


def corpus() -> np.ndarray:
    """One record of each kind the agent stores, at times that exercise the timestamp's zero fields."""
    v6 = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN)), 0x86DD)
    drop = {"type": names.EVENT_DROP, "drop_reason": 133, "verdict": names.VERDICT_DROPPED, "ep_id": CLIENT.id}
    kernel_drop = {"type": names.EVENT_DROP, "drop_reason": 3, "verdict": names.VERDICT_DROPPED, "location": 0x1234}
    batch = batch_of(
        record(tcp4(flags=SYN)),
        record(tcp4(flags=SYN | ACK), flags=events.F_REPLY | events.F_REPLY_KNOWN),
        record(udp4()),
        record(v6),
        record(ether(ipv4(CLIENT.ipv4 or "", WORLD_V4, 1, icmp4(8))), ifindex=IFINDEX["lxc1001"]),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(128)), 0x86DD)),
        record(tcp4(), **drop),
        record(udp4(dport=9999), len_cap=0, flags=events.F_KERNEL_DROP, ifindex=0, ep_id=0, **kernel_drop),
        record(tcp4(), type=names.EVENT_POLICY_VERDICT, policy_flags=0b011_001, verdict=names.VERDICT_DROPPED),
        record(tcp4(flags=ACK | PSH), flags=events.F_AGGREGATE, packets=12, bytes=3400, tcp_flags_seen=SYN | ACK),
        record(tcp4(), caplen=events.DEFAULT_CAPLEN, len_cap=30),  # cut inside the IP header
        lost_record(source=names.LOST_KERNEL_BUFFER, count=5, cpu=1),
        record(udp4(), ifindex=99),  # an interface the registry does not name
    )
    batch["ts"] = TS + np.arange(len(batch)) * 1000
    batch["ts"][1] = 1_700_000_001_000_000_000  # no nanoseconds
    return batch


def readers(mask: list[str] | None) -> tuple[FlowReader, FlowReader]:
    ring = FlowRing(63, events.event_dtype())
    ring.write(corpus())
    ctx = FilterContext(node_name="node1", snapshot=REGISTRY.snapshot, instance=DECODER.instance)
    request = observer_pb2.GetFlowsRequest(number=100)
    if mask is not None:
        request.field_mask.paths.extend(mask)
    return tuple(FlowReader(ring, DECODER, select(request, ctx), "node1") for _ in range(2))  # type: ignore[return-value]


@pytest.mark.parametrize(
    "mask",
    [
        None,
        list(HUBBLE_FIELD_MASK),
        ["source.labels", "l4.TCP", "flowscope"],
        ["time.nanos", "l4"],
        ["uuid", "flowscope"],
    ],
)
def test_wire_bytes_are_the_responses_serialized(mask: list[str] | None) -> None:
    """Also with a mask that keeps a part of the flow's time: the response's own time is whole all the same."""
    by_message, by_wire = readers(mask)
    messages = list(by_message.responses(lambda: True))
    wire = list(by_wire.wire(lambda: True))
    assert len(wire) == len(messages) == len(corpus())
    assert wire == [m.SerializeToString() for m in messages]
    assert [observer_pb2.GetFlowsResponse.FromString(b) for b in wire] == messages


@pytest.mark.parametrize("ts_ns", [0, 5, 1_000_000_000, TS, 2**62])
def test_timestamps_and_node_names_as_protobuf_writes_them(ts_ns: int) -> None:
    for node in ("node1", "", "n" * 300):
        response = observer_pb2.GetFlowsResponse(node_name=node)
        response.flow.node_name = node
        response.time.FromNanoseconds(ts_ns)
        assert ResponseWriter(node).flow(response.flow.SerializeToString(), ts_ns) == response.SerializeToString()
    stamp = observer_pb2.GetFlowsResponse().time
    stamp.FromNanoseconds(ts_ns)
    assert timestamp(ts_ns)[1:] == stamp.SerializeToString()


@pytest.mark.parametrize("value", [1, 127, 128, 300, 16383, 16384, 2**21, 2**35, 2**63])
def test_varints_as_protobuf_writes_them(value: int) -> None:
    assert b"\x08" + varint(value) == UInt64Value(value=value).SerializeToString()
