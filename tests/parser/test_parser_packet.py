"""Reading packet bytes: each protocol, VLAN tags, IPv6 extension headers, fragments, and bytes cut short."""

from __future__ import annotations

import ipaddress

import pytest
from records import (
    ACK,
    CLIENT_V4,
    CLIENT_V6,
    CWR,
    ECE,
    FIN,
    MAC_A,
    MAC_B,
    PSH,
    RST,
    SERVER_V4,
    SERVER_V6,
    SYN,
    URG,
    arp,
    ether,
    fragment_header,
    hop_by_hop,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    mac,
    sctp,
    tcp,
    tcp4,
    udp,
)

from flowscope.observer.parser.packet import TCP_NS, parse_packet


def v4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def v6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def test_tcp_over_ipv4() -> None:
    packet = parse_packet(tcp4(sport=40000, dport=80, flags=SYN | ACK))
    assert packet.src_mac == mac(MAC_A) and packet.dst_mac == mac(MAC_B)
    assert packet.ethertype == 0x0800 and packet.vlans == ()
    assert (packet.ip_version, packet.src_ip, packet.dst_ip) == (4, v4(CLIENT_V4), v4(SERVER_V4))
    assert (packet.protocol, packet.l4, packet.sport, packet.dport) == (6, True, 40000, 80)
    assert packet.tcp_flags == SYN | ACK
    assert not packet.truncated and not packet.fragment


def test_every_tcp_flag_including_ns() -> None:
    every = FIN | SYN | RST | PSH | ACK | URG | ECE | CWR
    assert parse_packet(tcp4(flags=every, ns=True)).tcp_flags == every | TCP_NS
    assert parse_packet(tcp4(flags=0)).tcp_flags == 0


@pytest.mark.parametrize(
    ("payload", "protocol", "ports"),
    [
        (udp(5353, 53), 17, (5353, 53)),
        (sctp(3868, 3869), 132, (3868, 3869)),
        (icmp4(8), 1, (8, 0)),
        (icmp4(3, 3), 1, (3, 3)),
    ],
)
def test_other_l4_over_ipv4(payload: bytes, protocol: int, ports: tuple[int, int]) -> None:
    packet = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, protocol, payload)))
    assert (packet.protocol, packet.l4, (packet.sport, packet.dport)) == (protocol, True, ports)
    assert packet.tcp_flags is None and not packet.truncated


def test_ipv6_icmpv6_and_udp() -> None:
    echo = parse_packet(ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(129)), 0x86DD))
    assert (echo.ip_version, echo.src_ip, echo.dst_ip) == (6, v6(CLIENT_V6), v6(SERVER_V6))
    assert (echo.protocol, echo.sport, echo.dport) == (58, 129, 0)
    dns = parse_packet(ether(ipv6(CLIENT_V6, SERVER_V6, 17, udp(40000, 53)), 0x86DD))
    assert (dns.protocol, dns.sport, dns.dport) == (17, 40000, 53)


def test_vlan_tags_are_read_past() -> None:
    one = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(1, 2)), vlans=[100]))
    assert one.vlans == (100,) and one.ethertype == 0x0800 and (one.sport, one.dport) == (1, 2)
    two = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 17, udp(3, 4)), vlans=[100, 200]))
    assert two.vlans == (100, 200) and (two.sport, two.dport) == (3, 4)


def test_ipv6_extension_headers_are_walked_to_the_l4_header() -> None:
    chain = [hop_by_hop(), (60, bytes([0]) + bytes(6)), fragment_header(0, more=True)]
    packet = parse_packet(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN), chain), 0x86DD))
    assert (packet.protocol, packet.l4, packet.sport, packet.dport, packet.tcp_flags) == (
        6,
        True,
        40000,
        443,
        SYN,
    )
    assert not packet.fragment and not packet.truncated


def test_non_first_fragments_have_no_l4() -> None:
    later4 = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 17, b"\x01" * 16, fragment_offset=185)))
    assert later4.fragment and not later4.l4 and later4.protocol == 17 and later4.ip_version == 4
    first4 = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 17, udp(1, 2), more_fragments=True)))
    assert not first4.fragment and first4.l4
    later6 = parse_packet(ether(ipv6(CLIENT_V6, SERVER_V6, 17, b"\x01" * 16, [fragment_header(185)]), 0x86DD))
    assert later6.fragment and not later6.l4 and later6.protocol == 17


def test_ipv4_options_are_skipped() -> None:
    options = b"\x94\x04\x00\x00"  # router alert
    packet = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(7, 8), options=options)))
    assert (packet.sport, packet.dport) == (7, 8) and not packet.truncated


def test_arp_and_other_ethertypes_have_no_ip() -> None:
    packet = parse_packet(arp())
    assert packet.ethertype == 0x0806 and packet.ip_version == 0 and not packet.l4
    assert packet.dst_mac == b"\xff" * 6 and not packet.truncated
    lldp = parse_packet(ether(b"\x02\x07" + bytes(20), 0x88CC))
    assert lldp.ethertype == 0x88CC and lldp.ip_version == 0


def test_nothing_captured_is_not_truncated() -> None:
    packet = parse_packet(b"")
    assert not packet.truncated and not packet.src_mac and packet.ethertype == 0


def test_an_ip_header_with_the_wrong_version_is_not_trusted() -> None:
    bogus = bytearray(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(1, 2)))
    bogus[0] = 0x55
    packet = parse_packet(ether(bytes(bogus)))
    assert packet.ethertype == 0x0800 and packet.ip_version == 0 and not packet.l4


# --- cut short at every layer ----------------------------------------------------------------------------

FRAME = tcp4(sport=40000, dport=80, flags=SYN | ACK)  # 14 + 20 + 20 bytes


@pytest.mark.parametrize(
    ("length", "macs", "ip", "ports", "flags"),
    [
        (10, False, False, False, False),  # inside the MAC addresses
        (13, True, False, False, False),  # inside the ethertype
        (14 + 12, True, False, False, False),  # inside the IPv4 header
        (14 + 20 + 2, True, True, False, False),  # inside the ports
        (14 + 20 + 4, True, True, True, False),  # ports, but not the flags
        (14 + 20 + 14, True, True, True, True),  # flags, but not the whole header
    ],
)
def test_truncated_tcp_over_ipv4(length: int, macs: bool, ip: bool, ports: bool, flags: bool) -> None:
    packet = parse_packet(FRAME[:length])
    assert packet.truncated
    assert bool(packet.src_mac) == macs
    assert (packet.ip_version == 4) == ip
    assert packet.l4 == ports
    if ports:
        assert (packet.sport, packet.dport) == (40000, 80)
    assert (packet.tcp_flags == SYN | ACK) == flags


def test_whole_frame_is_not_truncated() -> None:
    assert not parse_packet(FRAME).truncated


def test_truncated_inside_a_vlan_tag() -> None:
    packet = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(1, 2)), vlans=[100])[:16])
    assert packet.truncated and packet.src_mac and packet.ethertype == 0


def test_truncated_inside_ipv6_headers() -> None:
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(1, 2), [hop_by_hop(1)]), 0x86DD)
    in_fixed = parse_packet(frame[: 14 + 30])
    assert in_fixed.truncated and in_fixed.ip_version == 0
    in_extension = parse_packet(frame[: 14 + 40 + 10])
    assert in_extension.truncated and in_extension.ip_version == 6 and not in_extension.l4
    assert in_extension.src_ip == v6(CLIENT_V6)


def test_truncated_udp_and_icmp() -> None:
    short_udp = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 17, udp(1, 2)))[: 14 + 20 + 6])
    assert short_udp.truncated and short_udp.l4 and (short_udp.sport, short_udp.dport) == (1, 2)
    short_icmp = parse_packet(ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8)))[: 14 + 20 + 1])
    assert short_icmp.truncated and not short_icmp.l4


def test_ipv4_options_past_the_captured_bytes() -> None:
    options = bytes(40)  # the longest IPv4 header: 60 bytes
    frame = ether(ipv4(CLIENT_V4, SERVER_V4, 47, b"", options=options))
    packet = parse_packet(frame[: 14 + 30])
    assert packet.ip_version == 4 and packet.truncated and not packet.l4
