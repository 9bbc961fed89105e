"""The one-line Summary Hubble writes for a flow: "TCP Flags: SYN, ACK", "UDP", "ICMPv4 EchoRequest"...

Hubble's text comes from gopacket: the name of the deepest layer it decoded, TCP flags in a fixed order, and
gopacket's names for ICMP types and codes ("DestinationUnreachable(Port)", "EchoRequest(Code: 3)", "200(0)"
for a type it does not know). The same rules apply here so that scripts matching on Summary keep working.
Frames that are not IP, which Hubble summarises as just "Ethernet", say what they carry: "ARP",
"Ethernet 0x88cc".
"""

from __future__ import annotations

from functools import cache

from flowscope.common.icmp import icmp_text
from flowscope.observer.parser.packet import (
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_NS,
    Packet,
)

# In the order Hubble prints them.
TCP_FLAG_NAMES = (
    (0x02, "SYN"),
    (0x10, "ACK"),
    (0x04, "RST"),
    (0x01, "FIN"),
    (0x08, "PSH"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
    (TCP_NS, "NS"),
)

_ETHERTYPE_NAMES = {ETH_P_ARP: "ARP"}


@cache
def tcp_flags_text(flags: int) -> str:
    return ", ".join(name for bit, name in TCP_FLAG_NAMES if flags & bit)


def summarize(packet: Packet) -> str:
    """The Summary line for what the packet's bytes showed."""
    if packet.l4:
        protocol = packet.protocol
        if protocol == IPPROTO_TCP:
            return "TCP" if packet.tcp_flags is None else "TCP Flags: " + tcp_flags_text(packet.tcp_flags)
        if protocol == IPPROTO_UDP:
            return "UDP"
        if protocol == IPPROTO_SCTP:
            return "SCTP"
        if protocol == IPPROTO_ICMP:
            return icmp_text(4, packet.sport, packet.dport)
        if protocol == IPPROTO_ICMPV6:
            return icmp_text(6, packet.sport, packet.dport)
    if packet.ip_version:
        return f"IPv{packet.ip_version}"
    ethertype = packet.ethertype
    if ethertype == ETH_P_IP:
        return "IPv4"
    if ethertype == ETH_P_IPV6:
        return "IPv6"
    if ethertype in _ETHERTYPE_NAMES:
        return _ETHERTYPE_NAMES[ethertype]
    if ethertype:
        return f"Ethernet 0x{ethertype:04x}"
    return "Ethernet" if packet.src_mac else ""
