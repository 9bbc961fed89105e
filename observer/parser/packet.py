"""Reading the captured packet bytes: Ethernet, VLAN tags, IPv4/IPv6 (with extension headers) and L4 headers.

The datapath stores a packet's first bytes, often fewer than its headers when they are long (IPv6 extension
headers, IP options) or when the packet itself is cut short. So every step checks what is there, decodes as
far as the bytes go and says when it had to stop inside a header (`truncated`), instead of failing the whole
flow as gopacket does in Hubble.

This module knows nothing of protobuf: it turns bytes into a small `Packet` the decoder (and the filters'
rare slow paths) read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from flowscope.common.names import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP
from flowscope.observer.events import F_FRAGMENT, F_IPV6, F_L4, F_TRUNCATED

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS = 2

# IPPROTO_*: common/names.py (imported above, and taken from here by the filters).

# IPv6 extension headers: each has a "next header" byte and a length, so the L4 header can be found.
_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_NO_NEXT = 59
_IPV6_DEST_OPTS = 60
_IPV6_EXTENSIONS = frozenset(
    {_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_FRAGMENT, _IPV6_AH, _IPV6_DEST_OPTS, 135, 139, 140}
)

# The bytes an L4 header needs before its ports (or ICMP type/code) can be read, and before it is complete.
_L4_PORTS = 4
_L4_COMPLETE = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_SCTP: 12, IPPROTO_ICMP: 8, IPPROTO_ICMPV6: 4}
_TCP_FLAGS_END = 14  # the flags byte is the 14th; NS is the low bit of the 13th

TCP_NS = 0x100  # the NS flag, above the 8 bits of the TCP flags byte

_u16 = struct.Struct("!H").unpack_from
_ports = struct.Struct("!HH").unpack_from


@dataclass(slots=True)
class Packet:
    """What the captured bytes said, as far as they went."""

    src_mac: bytes = b""
    dst_mac: bytes = b""
    vlans: tuple[int, ...] = ()  # VLAN ids, outermost first
    ethertype: int = 0  # after any VLAN tags; 0 when the Ethernet header was cut
    ip_version: int = 0  # 4 or 6 once the fixed IP header was read whole
    src_ip: bytes = b""  # 4 or 16 bytes; kept from a cut header too, when all its bytes were captured
    dst_ip: bytes = b""
    protocol: int = 0  # the L4 protocol, after IPv6 extension headers
    fragment: bool = False  # a non-first IP fragment: it has no L4 header
    l4: bool = False  # ports (or ICMP type and code) were read
    sport: int = 0  # ICMP: type
    dport: int = 0  # ICMP: code
    tcp_flags: int | None = None  # FIN 0x01 ... CWR 0x80, NS 0x100; None when the flags byte was not captured
    truncated: bool = False  # the bytes ended inside a header
    l4_offset: int = 0  # where the L4 header starts in the bytes (0: not reached); L7 parsing reads on from it


def parse_packet(data: bytes) -> Packet:
    """Decode an Ethernet frame's headers from its first bytes."""
    packet = Packet()
    size = len(data)
    if size < 14:
        if size >= 12:
            packet.dst_mac, packet.src_mac = data[0:6], data[6:12]
        packet.truncated = size > 0
        return packet
    packet.dst_mac, packet.src_mac = data[0:6], data[6:12]
    (ethertype,) = _u16(data, 12)
    offset = 14
    while ethertype in _VLAN_TPIDS and len(packet.vlans) < MAX_VLAN_TAGS:
        if size < offset + 4:
            packet.truncated = True
            return packet
        tci, ethertype = _ports(data, offset)
        packet.vlans += (tci & 0x0FFF,)
        offset += 4
    packet.ethertype = ethertype
    if ethertype == ETH_P_IP:
        offset = _ipv4(data, offset, packet)
    elif ethertype == ETH_P_IPV6:
        offset = _ipv6(data, offset, packet)
    else:
        return packet
    if offset >= 0:
        packet.l4_offset = offset
        _l4(data, offset, packet)
    return packet


def _ipv4(data: bytes, offset: int, packet: Packet) -> int:
    """Read the IPv4 header; returns where its payload starts, or -1 when there is no L4 header to read."""
    if len(data) <= offset:
        packet.truncated = True
        return -1
    version_ihl = data[offset]
    if version_ihl >> 4 != 4 or version_ihl & 0x0F < 5:
        packet.truncated = len(data) < offset + 20
        return -1  # not an IPv4 header after all: nothing more to trust
    if not _addresses(data, offset + 12, 4, packet):
        return -1
    packet.ip_version = 4
    packet.protocol = data[offset + 9]
    if _u16(data, offset + 6)[0] & 0x1FFF:
        packet.fragment = True
        return -1
    return offset + (version_ihl & 0x0F) * 4


def _addresses(data: bytes, start: int, width: int, packet: Packet) -> bool:
    """Read the source and destination addresses, the last bytes of the fixed IP header; True when both were there.

    A header cut short keeps the source address when its bytes are all there: a flow then still says who sent it.
    """
    end = start + 2 * width
    if len(data) >= start + width:
        packet.src_ip = data[start : start + width]
    if len(data) < end:
        packet.truncated = True
        return False
    packet.dst_ip = data[start + width : end]
    return True


def _ipv6(data: bytes, offset: int, packet: Packet) -> int:
    """Read the IPv6 header and walk its extension headers; returns where the L4 header starts, or -1."""
    if len(data) <= offset:
        packet.truncated = True
        return -1
    if data[offset] >> 4 != 6:
        packet.truncated = len(data) < offset + 40
        return -1
    if not _addresses(data, offset + 8, 16, packet):
        return -1
    packet.ip_version = 6
    next_header = data[offset + 6]
    offset += 40
    while next_header in _IPV6_EXTENSIONS:
        if len(data) < offset + 8:  # every extension header is at least 8 bytes long
            packet.protocol = next_header
            packet.truncated = True
            return -1
        if next_header == _IPV6_FRAGMENT:
            if _u16(data, offset + 2)[0] >> 3:
                packet.protocol = data[offset]
                packet.fragment = True
                return -1
            length = 8
        elif next_header == _IPV6_AH:
            length = (data[offset + 1] + 2) * 4
        else:
            length = (data[offset + 1] + 1) * 8
        next_header = data[offset]
        offset += length
    packet.protocol = next_header
    return -1 if next_header == _IPV6_NO_NEXT else offset


def _l4(data: bytes, offset: int, packet: Packet) -> None:
    """Read ports (or ICMP type and code) and TCP flags, as far as the bytes go."""
    protocol = packet.protocol
    complete = _L4_COMPLETE.get(protocol)
    if complete is None:
        if offset > len(data):  # IP options or extension headers ran past the captured bytes
            packet.truncated = True
        return
    available = len(data) - offset
    if available < complete:
        packet.truncated = True
    if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if available >= 2:
            packet.l4 = True
            packet.sport, packet.dport = data[offset], data[offset + 1]
        return
    if available < _L4_PORTS:
        return
    packet.l4 = True
    packet.sport, packet.dport = _ports(data, offset)
    if protocol == IPPROTO_TCP and available >= _TCP_FLAGS_END:
        packet.tcp_flags = data[offset + 13] | (data[offset + 12] & 0x01) << 8


def complete_from_header(
    packet: Packet,
    ethertype: int,
    flags: int,
    saddr: bytes,
    daddr: bytes,
    protocol: int,
    sport: int,
    dport: int,
    tcp_flags: int,
) -> None:
    """Fill in, from the header's parsed columns, what the captured bytes did not reach.

    The datapath parses the whole packet, the bytes it keeps are only the first FS_CAPLEN (and none at all for
    some kernel drops): behind a long IPv6 extension chain the ports are in the header but not in the bytes.
    """
    if not packet.ethertype:
        packet.ethertype = ethertype
    if not packet.ip_version and ethertype in (ETH_P_IP, ETH_P_IPV6) and (any(saddr) or any(daddr)):
        width = 16 if flags & F_IPV6 else 4
        packet.ip_version = 6 if flags & F_IPV6 else 4
        packet.src_ip, packet.dst_ip = saddr[:width], daddr[:width]
        packet.protocol = protocol
        packet.fragment = bool(flags & F_FRAGMENT)
    if not packet.ip_version or packet.fragment or not flags & F_L4:
        return
    # The datapath sets F_L4 on TCP only once it read the flags byte too; a record that also says the packet
    # ended inside a header (F_TRUNCATED) has no flags to give.
    header_flags = tcp_flags if protocol == IPPROTO_TCP and not flags & F_TRUNCATED else None
    if not packet.l4:
        packet.l4 = True
        packet.protocol, packet.sport, packet.dport = protocol, sport, dport
        packet.tcp_flags = header_flags
    elif packet.tcp_flags is None and packet.protocol == protocol and (packet.sport, packet.dport) == (sport, dport):
        packet.tcp_flags = header_flags  # the captured bytes stopped between the ports and the flags
