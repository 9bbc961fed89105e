"""A packet's layers as a flow shows them: Ethernet, IP, L4 and the Summary, as far as its bytes went."""

from __future__ import annotations

from functools import cache

from flowscope.api.flow import flow_pb2
from flowscope.observer.parser.names import SnapshotNames
from flowscope.observer.parser.packet import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
)
from flowscope.observer.parser.summary import summarize


def fill_packet(flow: flow_pb2.Flow, packet: Packet, names: SnapshotNames) -> None:
    """Ethernet, IP and L4 (and the Summary), as far as the packet's bytes went."""
    flow.Summary = summarize(packet)
    # All-zero addresses on both ends: a header the kernel drop program made up for a packet that had none yet
    # (dropped on its way out of a pod's own stack), so there is no Ethernet to show.
    if packet.src_mac and (any(packet.src_mac) or any(packet.dst_mac)):
        flow.ethernet.source = packet.src_mac.hex(":")
        flow.ethernet.destination = packet.dst_mac.hex(":")
    if packet.src_ip:  # the destination too, unless the bytes (and the header) ended between the two
        ip = flow.IP
        ip.source = names.address(packet.src_ip)
        if packet.dst_ip:
            ip.destination = names.address(packet.dst_ip)
        ip.ipVersion = flow_pb2.IPv4 if len(packet.src_ip) == 4 else flow_pb2.IPv6
    if not packet.l4:
        return
    protocol = packet.protocol
    if protocol == IPPROTO_TCP:
        tcp = flow.l4.TCP
        tcp.source_port, tcp.destination_port = packet.sport, packet.dport
        if packet.tcp_flags is not None:
            fill_tcp_flags(tcp.flags, packet.tcp_flags)
    elif protocol == IPPROTO_UDP:
        flow.l4.UDP.source_port, flow.l4.UDP.destination_port = packet.sport, packet.dport
    elif protocol == IPPROTO_SCTP:
        flow.l4.SCTP.source_port, flow.l4.SCTP.destination_port = packet.sport, packet.dport
    elif protocol == IPPROTO_ICMP:
        flow.l4.ICMPv4.type, flow.l4.ICMPv4.code = packet.sport, packet.dport
    elif protocol == IPPROTO_ICMPV6:
        flow.l4.ICMPv6.type, flow.l4.ICMPv6.code = packet.sport, packet.dport


_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


@cache
def _tcp_flags(bits: int) -> flow_pb2.TCPFlags:
    """The TCPFlags message for a flags value (FIN 0x01 ... CWR 0x80, NS 0x100), built once per value."""
    return flow_pb2.TCPFlags(**{name: True for i, name in enumerate(_FLAG_NAMES) if bits >> i & 1})


def fill_tcp_flags(message: flow_pb2.TCPFlags, bits: int) -> None:
    """Set the flags that are on; the message is present even when none are (as Hubble's is)."""
    message.CopyFrom(_tcp_flags(bits))
    message.SetInParent()
