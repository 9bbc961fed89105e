"""How a packet is recognised on the next node: a digest of the header fields no hop of the path changes.

An skb address links hops within a node (it survives veth and namespace crossings), but never leaves it; what
reaches the next node is the bytes. The digest is taken over what a router leaves alone and what tells two
packets of one connection apart (SPIE and trajectory sampling do the same; docs/reference/packet-path.md):
addresses, protocol, ports, the IPv4 id, TCP sequence and acknowledgement numbers and flags, and the L4 payload
length. TTL, hop limit, checksums and TOS are left out (each hop may change them). Under VXLAN the inner
headers are the packet's: the outer ones are the tunnel's, made at the first node and gone at the second.

A match is an inference, never a proof: a retransmission repeats the digest, a NAT between the nodes breaks it,
and an IPv6 packet or one with IPv4 id 0 (DF from an unconnected socket) has less to tell it apart. Paths
linked by digest say so.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TYPES = (0x8100, 0x88A8)
VXLAN_PORTS = (4789, 8472)  # IANA's, and Linux's and Cilium's default
VXLAN_HLEN = 8
TCP, UDP, SCTP = 6, 17, 132


def digest(frame: bytes) -> str:
    """The digest of an Ethernet frame's invariant fields, in hex; "" when its headers were not captured."""
    fields = _invariant_fields(frame)
    return hashlib.blake2b(fields, digest_size=8).hexdigest() if fields else ""


@dataclass(frozen=True)
class Segment:
    """What links the pieces of a packet that segmentation cut up or GRO merged: its connection (inner headers),
    and for TCP the range of the byte stream it carries."""

    flow: str  # digest of addresses, protocol and ports; "" when the headers were not captured
    seq: int = 0
    length: int = 0  # L4 payload bytes


def segment(frame: bytes) -> Segment:
    fields = _invariant_fields(frame)
    if not fields:
        return Segment("")
    # head: version(1) id(2) protocol(1) addresses; then payload length(4); then the L4 fields
    version, _, protocol = struct.unpack_from("!BHB", fields)
    width = 8 if version == 4 else 32
    addresses = fields[4 : 4 + width]
    payload = struct.unpack_from("!I", fields, 4 + width)[0]
    l4 = fields[8 + width :]
    flow = hashlib.blake2b(bytes([version, protocol]) + addresses + l4[:4], digest_size=8).hexdigest()
    if protocol != TCP or len(l4) < 13:
        return Segment(flow)
    seq = struct.unpack_from("!I", l4, 4)[0]
    return Segment(flow, seq, max(0, payload - _tcp_header_length(frame)))


def _tcp_header_length(frame: bytes) -> int:
    offset, ethertype = l3_offset(frame)
    if ethertype == ETH_P_IP and len(frame) >= offset + 20:
        protocol, l4 = frame[offset + 9], offset + (frame[offset] & 0x0F) * 4
    elif ethertype == ETH_P_IPV6 and len(frame) >= offset + 40:
        protocol, l4 = frame[offset + 6], offset + 40
    else:
        return 0
    if (
        protocol == UDP
        and len(frame) >= l4 + 8 + VXLAN_HLEN
        and struct.unpack_from("!H", frame, l4 + 2)[0] in VXLAN_PORTS
    ):
        return _tcp_header_length(frame[l4 + 8 + VXLAN_HLEN :])
    return (frame[l4 + 12] >> 4) * 4 if len(frame) > l4 + 12 else 0


def _invariant_fields(frame: bytes, depth: int = 0) -> bytes:
    offset, ethertype = l3_offset(frame)
    if ethertype == ETH_P_IP and len(frame) >= offset + 20:
        ihl = (frame[offset] & 0x0F) * 4
        total, ident = struct.unpack_from("!HH", frame, offset + 2)
        protocol = frame[offset + 9]
        addresses = frame[offset + 12 : offset + 20]
        l4, payload = offset + ihl, total - ihl
        head = struct.pack("!BHB", 4, ident, protocol) + addresses
    elif ethertype == ETH_P_IPV6 and len(frame) >= offset + 40:
        payload, protocol = struct.unpack_from("!HB", frame, offset + 4)
        addresses = frame[offset + 8 : offset + 40]
        l4 = offset + 40
        head = struct.pack("!BHB", 6, 0, protocol) + addresses
    else:
        return b""
    if protocol == UDP and depth == 0 and len(frame) >= l4 + 8 + VXLAN_HLEN:
        dport = struct.unpack_from("!H", frame, l4 + 2)[0]
        if dport in VXLAN_PORTS:
            inner = _invariant_fields(frame[l4 + 8 + VXLAN_HLEN :], depth + 1)
            if inner:
                return inner
    return head + struct.pack("!I", payload) + _l4_fields(frame, l4, protocol)


def l3_offset(frame: bytes) -> tuple[int, int]:
    if len(frame) < ETH_HLEN:
        return 0, 0
    offset, ethertype = ETH_HLEN, struct.unpack_from("!H", frame, 12)[0]
    while ethertype in VLAN_TYPES and len(frame) >= offset + 4:
        ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
        offset += 4
    return offset, ethertype


def _l4_fields(frame: bytes, l4: int, protocol: int) -> bytes:
    if protocol == TCP and len(frame) >= l4 + 14:
        return frame[l4 : l4 + 12] + frame[l4 + 13 : l4 + 14]  # ports, seq, ack; flags
    if protocol in (UDP, SCTP) and len(frame) >= l4 + 4:
        return frame[l4 : l4 + 4]
    return frame[l4 : l4 + 4]  # ICMP: type, code, checksum (of the unchanged message)
