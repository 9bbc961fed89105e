"""A Python twin of the datapath's filter (trace.h: fs_trace_term_match, fs_trace_filter), packets to run it on,
and the same packets as frames for libpcap, so the compiled terms can be checked against both the expression
they came from and tcpdump's reading of it.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass

from flowscope.observer.trace.terms import All, AnyOf, Expr, Field, Not, Term

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58


@dataclass(frozen=True)
class Packet:
    """What the datapath's parse stage leaves for the filter: family 0 for a frame without IP."""

    family: int
    src: IPAddress | None = None
    dst: IPAddress | None = None
    proto: int = 0
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0


def term_matches(term: Term, packet: Packet) -> bool:
    ports = packet.proto in (TCP, UDP, SCTP)
    hit = False
    if term.field in (Field.SRC_ADDR, Field.DST_ADDR, Field.ANY_ADDR):
        sides = {Field.SRC_ADDR: (packet.src,), Field.DST_ADDR: (packet.dst,)}.get(term.field, (packet.src, packet.dst))
        hit = packet.family == term.family and any(ip in term.network for ip in sides if ip is not None)
    elif term.field in (Field.SRC_PORT, Field.DST_PORT, Field.ANY_PORT):
        values = {Field.SRC_PORT: (packet.sport,), Field.DST_PORT: (packet.dport,)}.get(
            term.field, (packet.sport, packet.dport)
        )
        hit = ports and any(term.lo <= port <= term.hi for port in values)
    elif term.field == Field.PROTO:
        hit = packet.family != 0 and packet.proto == term.lo
    elif term.field == Field.TCP_FLAGS:
        hit = packet.proto == TCP and (packet.tcp_flags & term.lo) == term.hi
    elif term.field == Field.FAMILY:
        hit = packet.family == term.lo
    return hit != term.negate


def matches(terms: tuple[Term, ...], packet: Packet) -> bool:
    """fs_trace_filter: some clause (terms between Field.OR terms) whose every term holds."""
    clause = True
    for term in terms:
        if term.field == Field.OR:
            if clause:
                return True
            clause = True
        elif clause and not term_matches(term, packet):
            clause = False
    return clause


def evaluate(expr: Expr, packet: Packet) -> bool:
    """The expression as parsed, before it was brought to clauses."""
    if isinstance(expr, Term):
        return term_matches(expr, packet)
    if isinstance(expr, Not):
        return not evaluate(expr.part, packet)
    if isinstance(expr, All):
        return all(evaluate(part, packet) for part in expr.parts)
    assert isinstance(expr, AnyOf)
    return any(evaluate(part, packet) for part in expr.parts)


V4 = [ipaddress.ip_address(a) for a in ("10.0.0.1", "10.0.0.2", "10.0.1.9", "192.168.7.7")]
V6 = [ipaddress.ip_address(a) for a in ("fd00::1", "fd00::2", "fd00:1::9", "2001:db8::7")]
PORTS = [53, 80, 443, 1000, 1500, 2000, 8080]


def random_packet(rng: random.Random) -> Packet:
    family = rng.choice((0, 4, 4, 6, 6))
    if family == 0:
        return Packet(0)
    pool = V4 if family == 4 else V6
    proto = rng.choice((TCP, TCP, UDP, SCTP, ICMP if family == 4 else ICMPV6))
    with_ports = proto in (TCP, UDP, SCTP)
    return Packet(
        family,
        rng.choice(pool),
        rng.choice(pool),
        proto,
        rng.choice(PORTS) if with_ports else 0,
        rng.choice(PORTS) if with_ports else 0,
        rng.randrange(256) if proto == TCP else 0,
    )


def frame(packet: Packet) -> bytes:
    """The packet on an Ethernet wire (checksums zero: neither libpcap nor the datapath reads them)."""
    macs = bytes.fromhex("020000000002020000000001")
    if packet.family == 0:  # an ARP request
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, macs[6:], bytes(4), bytes(6), bytes(4))
        return macs + struct.pack("!H", 0x0806) + arp
    if packet.proto == TCP:
        l4 = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 1, 0, 5 << 4, packet.tcp_flags, 512, 0, 0)
    elif packet.proto == UDP:
        l4 = struct.pack("!HHHH", packet.sport, packet.dport, 8, 0)
    elif packet.proto == SCTP:
        l4 = struct.pack("!HHII", packet.sport, packet.dport, 0, 0)
    else:
        l4 = struct.pack("!BBHI", 8 if packet.proto == ICMP else 128, 0, 0, 1)
    assert packet.src is not None and packet.dst is not None
    if packet.family == 4:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, packet.proto, 0)
        return macs + b"\x08\x00" + ip + packet.src.packed + packet.dst.packed + l4
    ip = struct.pack("!IHBB", 6 << 28, len(l4), packet.proto, 64)
    return macs + b"\x86\xdd" + ip + packet.src.packed + packet.dst.packed + l4


def pcap_file(packets: list[Packet]) -> bytes:
    """A classic pcap of the packets, the i-th stamped i + 1 seconds (how tcpdump's output names them)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for number, packet in enumerate(packets, start=1):
        data = frame(packet)
        out += struct.pack("<IIII", number, 0, len(data), len(data)) + data
    return out
