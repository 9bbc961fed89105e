"""The one-line Summary Hubble writes for a flow: "TCP Flags: SYN, ACK", "UDP", "ICMPv4 EchoRequest"...

Hubble's text comes from gopacket: the name of the deepest layer it decoded, TCP flags in a fixed order, and
gopacket's names for ICMP types and codes ("DestinationUnreachable(Port)", "EchoRequest(Code: 3)", "200(0)"
for a type it does not know). The same rules apply here so that scripts matching on Summary keep working.
Frames that are not IP, which Hubble summarises as just "Ethernet", say what they carry: "ARP",
"Ethernet 0x88cc".
"""

from __future__ import annotations

from functools import cache

from observer.parser.packet import (
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

_Codes = dict[int, str] | None

ICMPV4_TYPES: dict[int, tuple[str, _Codes]] = {
    0: ("EchoReply", None),
    3: (
        "DestinationUnreachable",
        {
            0: "Net",
            1: "Host",
            2: "Protocol",
            3: "Port",
            4: "FragmentationNeeded",
            5: "SourceRoutingFailed",
            6: "NetUnknown",
            7: "HostUnknown",
            8: "SourceIsolated",
            9: "NetAdminProhibited",
            10: "HostAdminProhibited",
            11: "NetTOS",
            12: "HostTOS",
            13: "CommAdminProhibited",
            14: "HostPrecedence",
            15: "PrecedenceCutoff",
        },
    ),
    4: ("SourceQuench", None),
    5: ("Redirect", {0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"}),
    8: ("EchoRequest", None),
    9: ("RouterAdvertisement", None),
    10: ("RouterSolicitation", None),
    11: ("TimeExceeded", {0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    12: ("ParameterProblem", {0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}),
    13: ("TimestampRequest", None),
    14: ("TimestampReply", None),
    15: ("InfoRequest", None),
    16: ("InfoReply", None),
    17: ("AddressMaskRequest", None),
    18: ("AddressMaskReply", None),
}

ICMPV6_TYPES: dict[int, tuple[str, _Codes]] = {
    1: (
        "DestinationUnreachable",
        {
            0: "NoRouteToDst",
            1: "AdminProhibited",
            2: "BeyondScopeOfSrc",
            3: "AddressUnreachable",
            4: "PortUnreachable",
            5: "SrcAddressFailedPolicy",
            6: "RejectRouteToDst",
        },
    ),
    2: ("PacketTooBig", None),
    3: ("TimeExceeded", {0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    4: (
        "ParameterProblem",
        {0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"},
    ),
    128: ("EchoRequest", None),
    129: ("EchoReply", None),
    133: ("RouterSolicitation", None),
    134: ("RouterAdvertisement", None),
    135: ("NeighborSolicitation", None),
    136: ("NeighborAdvertisement", None),
    137: ("Redirect", None),
}

_ETHERTYPE_NAMES = {ETH_P_ARP: "ARP"}


def icmp_type_code(types: dict[int, tuple[str, _Codes]], icmp_type: int, code: int) -> str:
    """gopacket's name for an ICMP type and code."""
    known = types.get(icmp_type)
    if known is None:
        return f"{icmp_type}({code})"
    name, codes = known
    if codes is None and code == 0:
        return name
    code_name = codes.get(code) if codes else None
    return f"{name}({code_name})" if code_name else f"{name}(Code: {code})"


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
            return "ICMPv4 " + icmp_type_code(ICMPV4_TYPES, packet.sport, packet.dport)
        if protocol == IPPROTO_ICMPV6:
            return "ICMPv6 " + icmp_type_code(ICMPV6_TYPES, packet.sport, packet.dport)
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
