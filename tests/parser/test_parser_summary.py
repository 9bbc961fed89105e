"""The Summary line, in Hubble's words."""

from __future__ import annotations

import pytest
from records import (
    ACK,
    CLIENT_V4,
    CLIENT_V6,
    FIN,
    PSH,
    RST,
    SERVER_V4,
    SERVER_V6,
    SYN,
    arp,
    ether,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    sctp,
    tcp4,
    udp4,
)

from flowscope.observer.parser import parse_packet, summarize


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (tcp4(flags=SYN), "TCP Flags: SYN"),
        (tcp4(flags=SYN | ACK), "TCP Flags: SYN, ACK"),
        (tcp4(flags=FIN | PSH | ACK | RST), "TCP Flags: ACK, RST, FIN, PSH"),
        (tcp4(flags=ACK, ns=True), "TCP Flags: ACK, NS"),
        (tcp4(flags=0), "TCP Flags: "),
        (udp4(), "UDP"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 132, sctp(1, 2))), "SCTP"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8))), "ICMPv4 EchoRequest"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(0))), "ICMPv4 EchoReply"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(3, 3))), "ICMPv4 DestinationUnreachable(Port)"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(3, 99))), "ICMPv4 DestinationUnreachable(Code: 99)"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8, 3))), "ICMPv4 EchoRequest(Code: 3)"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(200, 1))), "ICMPv4 200(1)"),
        (ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(128)), 0x86DD), "ICMPv6 EchoRequest"),
        (ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(129)), 0x86DD), "ICMPv6 EchoReply"),
        (
            ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(1, 4)), 0x86DD),
            "ICMPv6 DestinationUnreachable(PortUnreachable)",
        ),
        (ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(135)), 0x86DD), "ICMPv6 NeighborSolicitation"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 47, b"gre!")), "IPv4"),
        (ether(ipv4(CLIENT_V4, SERVER_V4, 6, b"", fragment_offset=8)), "IPv4"),
        (ether(ipv6(CLIENT_V6, SERVER_V6, 59), 0x86DD), "IPv6"),
        (arp(), "ARP"),
        (ether(bytes(30), 0x88CC), "Ethernet 0x88cc"),
    ],
)
def test_summary(frame: bytes, text: str) -> None:
    assert summarize(parse_packet(frame)) == text


def test_cut_short_says_as_much_as_was_read() -> None:
    frame = tcp4()
    assert summarize(parse_packet(frame[: 14 + 20 + 6])) == "TCP"  # ports, no flags
    assert summarize(parse_packet(frame[: 14 + 10])) == "IPv4"  # the IP header itself was cut
    assert summarize(parse_packet(frame[:12])) == "Ethernet"
    assert summarize(parse_packet(b"")) == ""
