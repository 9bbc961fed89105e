"""L4 fields: protocol, source/destination port, TCP flags."""

from __future__ import annotations

import pytest
from filter_cases import only, select
from records import ACK, FIN, PSH, SYN, batch_of, record, tcp4

from flowscope.api.flow import flow_pb2 as pb

TCP_FLOWS = ["syn", "synack", "world", "denied", "policy", "ns6"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["tcp"], TCP_FLOWS),
        (["TCP"], TCP_FLOWS),
        (["udp"], ["dns", "kernel", "to_dns6"]),
        (["icmp"], ["ping", "pong6"]),
        (["ICMPv4"], ["ping"]),
        (["icmpv6"], ["pong6"]),
        (["sctp"], ["sctp"]),
        (["http", "dns", "kafka"], []),  # L7 kinds: none of these records is an L7 flow (test_filter_l7.py)
        (["dns", "udp"], ["dns", "kernel", "to_dns6"]),
    ],
)
def test_protocol(names: list[str], expected: list[str]) -> None:
    assert only(protocol=names) == expected


def test_fragments_and_frames_without_l4_have_no_protocol() -> None:
    everything_l4 = only(protocol=["tcp", "udp", "icmp", "sctp"])
    assert "fragment" not in everything_l4 and "arp" not in everything_l4


@pytest.mark.parametrize(
    ("field", "ports", "expected"),
    [
        ("destination_port", ["80"], ["syn", "denied", "ns6"]),
        ("destination_port", ["53", "443"], ["dns", "world", "to_dns6"]),
        ("destination_port", ["9999"], ["kernel"]),  # from the header: the drop carried no bytes
        ("source_port", ["80"], ["synack"]),
        ("source_port", ["3868"], ["sctp"]),
        ("destination_port", ["0080"], ["syn", "denied", "ns6"]),
        ("destination_port", ["0"], []),  # ICMP's code sits in the port column; ICMP has no ports
        ("source_port", ["8"], []),  # nor its type
    ],
)
def test_ports(field: str, ports: list[str], expected: list[str]) -> None:
    assert only(**{field: ports}) == expected


def test_tcp_flags_every_flag_of_an_entry_must_be_set() -> None:
    assert only(tcp_flags=[pb.TCPFlags(SYN=True)]) == ["syn", "synack", "world", "denied", "policy"]
    assert only(tcp_flags=[pb.TCPFlags(SYN=True, ACK=True)]) == ["synack"]
    assert only(tcp_flags=[pb.TCPFlags(FIN=True)]) == []
    assert only(tcp_flags=[pb.TCPFlags(FIN=True), pb.TCPFlags(ACK=True)]) == ["synack", "ns6"]


def test_tcp_flags_ns_is_read_from_the_packet() -> None:
    assert only(tcp_flags=[pb.TCPFlags(NS=True)]) == ["ns6"]
    assert only(tcp_flags=[pb.TCPFlags(NS=True, ACK=True)]) == ["ns6"]
    assert only(tcp_flags=[pb.TCPFlags(NS=True, SYN=True)]) == []
    records = batch_of(
        record(tcp4(flags=ACK, ns=True)), record(tcp4(flags=ACK)), record(tcp4(flags=ACK, ns=True), len_cap=0)
    )
    assert select([pb.FlowFilter(tcp_flags=[pb.TCPFlags(NS=True)])], records=records) == ["0"]


def test_tcp_flags_an_empty_entry_matches_tcp() -> None:
    assert only(tcp_flags=[pb.TCPFlags()]) == TCP_FLOWS


def test_tcp_flags_many_combinations() -> None:
    flags = [SYN, SYN | ACK, ACK, FIN | ACK, PSH | ACK, FIN | PSH | ACK]
    records = batch_of([record(tcp4(flags=f)) for f in flags])
    fin = select([pb.FlowFilter(tcp_flags=[pb.TCPFlags(FIN=True, ACK=True)])], records=records)
    assert fin == ["3", "5"]
