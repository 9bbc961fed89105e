"""Decoder fuzzing (issue 10): 20,000 seeded random and mutated records through the real decoder, every cut of
well-formed frames decoded exactly as far as its bytes go, and one regression case for each fix the fuzzer led to.

The engine is decoder_fuzz.py; bench/reliability.py runs it with a million cases.
"""

from __future__ import annotations

import pytest
from decoder_fuzz import SHAPES, Fuzzer, Shape, check_cut, check_cut_decoded
from records import (
    CLIENT_V4,
    CLIENT_V6,
    SERVER_V6,
    SYN,
    ether,
    hop_by_hop,
    ipv6,
    lab_registry,
    record,
    tcp,
    tcp4,
)

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.parser import FlowDecoder, parse_packet

SEED = 20_260_610
CASES = 20_000


@pytest.fixture
def decoder() -> FlowDecoder:
    return FlowDecoder("node1", lab_registry(), b"fuzz")


def test_20000_random_and_mutated_records_decode_without_an_exception_and_as_their_bytes_say() -> None:
    outcome = Fuzzer(SEED).run(CASES)
    assert outcome.failures[:3] == [], f"{len(outcome.failures)} of {CASES} cases failed"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.name)
def test_every_cut_of_a_frame_keeps_each_field_whose_bytes_it_has(decoder: FlowDecoder, shape: Shape) -> None:
    for n in range(len(shape.frame) + 1):
        try:
            check_cut(shape, n)
            check_cut_decoded(decoder, shape, n)
        except AssertionError as exc:
            raise AssertionError(f"{shape.name} cut at {n} bytes: {exc}") from exc


# --- what the fuzzer found --------------------------------------------------------------------------------


def test_a_drop_reason_past_int32_keeps_its_number_and_is_left_unnamed(decoder: FlowDecoder) -> None:
    """Found: protobuf enums are int32, the record's drop_reason a __u32; setting drop_reason_desc raised."""
    flow = decoder.decode(record(tcp4(), verdict=names.VERDICT_DROPPED, drop_reason=0x8000_0000)[0], 1)
    assert flow.drop_reason == 0x8000_0000 and flow.drop_reason_desc == flow_pb2.DROP_REASON_UNKNOWN
    named = decoder.decode(record(tcp4(), verdict=names.VERDICT_DROPPED, drop_reason=133)[0], 2)
    assert named.drop_reason_desc == flow_pb2.POLICY_DENIED


def _bytes_only(packet: bytes) -> flow_pb2.Flow:
    """A record whose header columns know nothing: what is decoded comes from the captured bytes alone."""
    bare = record(b"")
    bare["data"], bare["len_cap"] = packet.ljust(events.DEFAULT_CAPLEN, b"\0"), len(packet)
    return FlowDecoder("node1", lab_registry(), b"fuzz").decode(bare[0], 1)


def test_an_ipv4_header_cut_after_its_source_address_keeps_it() -> None:
    """Found: a header cut anywhere before its end kept no address at all."""
    cut = tcp4()[: 14 + 17]
    packet = parse_packet(cut)
    assert (packet.src_ip, packet.dst_ip, packet.ip_version, packet.truncated) == (
        bytes([10, 200, 1, 11]),
        b"",
        0,
        True,
    )
    flow = _bytes_only(cut)
    assert (flow.IP.source, flow.IP.destination, flow.IP.ipVersion) == (CLIENT_V4, "", flow_pb2.IPv4)
    assert flow.Summary == "IPv4" and flow.flowscope.truncated


def test_an_ipv6_header_cut_after_its_source_address_keeps_it() -> None:
    cut = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(1, 2)), 0x86DD)[: 14 + 30]
    flow = _bytes_only(cut)
    assert (flow.IP.source, flow.IP.destination, flow.IP.ipVersion) == (CLIENT_V6, "", flow_pb2.IPv6)


def test_tcp_flags_the_bytes_stop_short_of_come_from_the_header(decoder: FlowDecoder) -> None:
    """Found: bytes that reached the ports but not the flags left the flow without flags, though the datapath
    (which read the whole header: no F_TRUNCATED) had them in its column, as the tcp_flags filter reads them."""
    chain = [hop_by_hop(units=7)]  # 64 bytes of options: the TCP header starts at byte 118 of the frame
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN), chain), 0x86DD)
    flow = decoder.decode(record(frame, len_cap=14 + 40 + 64 + 4)[0], 1)  # ports kept, flags not
    assert (flow.l4.TCP.source_port, flow.l4.TCP.destination_port) == (40000, 443)
    assert flow.l4.TCP.flags == flow_pb2.TCPFlags(SYN=True) and flow.Summary == "TCP Flags: SYN"
    assert flow.flowscope.truncated


def test_a_header_that_says_the_packet_ended_inside_it_gives_no_tcp_flags(decoder: FlowDecoder) -> None:
    """Found with the case above: ports in the header, flags not (F_TRUNCATED: the packet ended before them), the
    bytes stopping before both. The column's 0 was shown as a present but empty flags message ("TCP Flags: ")."""
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN), [hop_by_hop(units=8)]), 0x86DD)
    short = decoder.decode(record(frame[: 14 + 40 + 72 + 6])[0], 2)  # the packet ended there; 128 bytes kept
    assert short.flowscope.truncated and (short.l4.TCP.source_port, short.l4.TCP.destination_port) == (40000, 443)
    assert not short.l4.TCP.HasField("flags") and short.Summary == "TCP"
