"""Packets built byte by byte with struct, so each test says exactly what is on the wire.

Checksums are left zero: the datapath never looks at them, and BPF_PROG_TEST_RUN does not either.
"""

from __future__ import annotations

import ipaddress
import struct

MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_LLDP = 0x0800, 0x0806, 0x86DD, 0x88CC
ETH_P_8021Q, ETH_P_8021AD = 0x8100, 0x88A8

IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_ICMPV6 = 43, 44, 51, 58
IPPROTO_NONE, IPPROTO_DSTOPTS, IPPROTO_SCTP, IPPROTO_GRE = 59, 60, 132, 47

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def eth(ethertype: int, payload: bytes = b"", vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """An Ethernet frame; `vlans` are (tag protocol, VLAN id) from the outermost in."""
    frame = MAC_DST + MAC_SRC
    for tpid, vid in vlans:
        frame += struct.pack("!HH", tpid, vid)
    return frame + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes = b"",
    *,
    frag_offset: int = 0,
    more: bool = False,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header (with `options`, a multiple of 4 bytes) and its payload; frag_offset in 8-byte units."""
    ihl = 5 + len(options) // 4
    frag = (0x2000 if more else 0) | frag_offset
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(payload),
        0x1234,
        frag,
        64,
        proto,
        0,
        addr(src),
        addr(dst),
    )
    return header + options + payload


def ipv6(src: str, dst: str, nexthdr: int, payload: bytes = b"") -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nexthdr, 64, addr(src), addr(dst)) + payload


def ext_opts(nexthdr: int, units: int = 0) -> bytes:
    """A hop-by-hop or destination options header of (units + 1) * 8 bytes, padded with PadN."""
    body = 6 + units * 8
    return struct.pack("!BBBB", nexthdr, units, 1, body - 2) + bytes(body - 2)


def ext_routing(nexthdr: int) -> bytes:
    """A type-0-shaped routing header with no addresses left (8 bytes)."""
    return struct.pack("!BBBB4x", nexthdr, 0, 0, 0)


def ext_fragment(nexthdr: int, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    """A fragment header; `offset` in 8-byte units."""
    return struct.pack("!BBHI", nexthdr, 0, (offset << 3) | (1 if more else 0), ident)


def ext_ah(nexthdr: int, icv_words: int = 3) -> bytes:
    """An authentication header with an ICV of `icv_words` 32-bit words: (3 + icv_words) * 4 bytes."""
    return struct.pack("!BBHII", nexthdr, 1 + icv_words, 0, 0x100, 1) + bytes(4 * icv_words)


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(type_: int, code: int, rest: bytes = b"\x00\x01\x00\x01") -> bytes:
    """ICMPv4 or ICMPv6: type, code, checksum, then the type's own bytes."""
    return struct.pack("!BBH", type_, code, 0) + rest


def sctp(sport: int, dport: int) -> bytes:
    """The common header and an INIT chunk header."""
    return struct.pack("!HHII", sport, dport, 0, 0) + struct.pack("!BBH", 1, 0, 4)


def arp_request(sender: str, target: str) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, MAC_SRC, addr(sender), bytes(6), addr(target))


def lldp() -> bytes:
    """Chassis ID, port ID and TTL TLVs, then End."""
    chassis = struct.pack("!HB", (1 << 9) | 7, 4) + MAC_SRC
    port = struct.pack("!HB", (2 << 9) | 4, 5) + b"et0"
    ttl = struct.pack("!HH", (3 << 9) | 2, 120)
    return chassis + port + ttl + b"\x00\x00"
