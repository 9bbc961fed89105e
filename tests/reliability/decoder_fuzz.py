"""The decoder fuzzer, shared by tests/reliability/test_decoder_fuzz.py (20,000 cases) and bench/reliability.py
(a million): stored records, valid ones mutated and random ones, through the real parser and decoder.

What must hold whatever the record holds (`check`): no exception escapes `FlowDecoder.decode` (nor
`decode_lost`), the flow serialises, and it agrees with what the captured bytes say, which in turn agree with
every shorter cut of the same bytes (a field decoded from a prefix is never contradicted by the whole). What
must hold exactly for well-formed frames cut anywhere (`check_cut`, over `SHAPES`): each field is there iff
its bytes are, e.g. an IPv4 header cut after its source address keeps that address.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import json_format
from records import (
    ACK,
    CLIENT_V4,
    CLIENT_V6,
    CWR,
    DNS_V4,
    FIN,
    PSH,
    SERVER_V4,
    SERVER_V6,
    SYN,
    arp,
    ether,
    fragment_header,
    hop_by_hop,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    lab_registry,
    record,
    sctp,
    tcp,
    udp,
)

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.parser import FlowDecoder, Packet, parse_packet
from flowscope.observer.parser.packet import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, TCP_NS

# The bytes each L4 header needs for its ports (ICMP: type and code) and to be whole.
_PORTS_NEED = {names.IPPROTO_ICMP: 2, names.IPPROTO_ICMPV6: 2}
_COMPLETE = {6: 20, 17: 8, 132: 12, names.IPPROTO_ICMP: 8, names.IPPROTO_ICMPV6: 4}
_TCP_FLAGS_END = 14


@dataclass(frozen=True)
class Shape:
    """A well-formed frame and where each of its fields ends, so that every cut of it has one right parse."""

    name: str
    frame: bytes
    vlans: tuple[int, ...] = ()
    ethertype: int = ETH_P_IP
    family: int = 4  # 0: not IP
    src: str = CLIENT_V4
    dst: str = SERVER_V4
    l4_at: int = 0  # where the L4 header starts; 0: it is never read (a later fragment, not IP)
    protocol: int = 0
    ports: tuple[int, int] = (0, 0)  # ICMP: type and code
    tcp_flags: int | None = None
    fragment_at: int = 0  # the bytes needed to see it is a later fragment; 0: it is not one

    @property
    def ip_at(self) -> int:
        return 14 + 4 * len(self.vlans)

    @property
    def src_end(self) -> int:
        return self.ip_at + (16 if self.family == 4 else 24)

    @property
    def dst_end(self) -> int:
        """Both families' fixed headers end with the destination address."""
        return self.ip_at + (20 if self.family == 4 else 40)

    @property
    def headers_end(self) -> int:
        """A cut before this is inside a header (truncated)."""
        if self.l4_at:
            return self.l4_at + _COMPLETE[self.protocol]
        if self.fragment_at:
            return self.fragment_at
        return self.dst_end if self.family else self.ip_at

    def ports_at(self) -> int:
        """The cut from which the ports (ICMP: type and code) are read; 0 when never."""
        return self.l4_at + _PORTS_NEED.get(self.protocol, 4) if self.l4_at else 0


_DEST_OPTS = (60, bytes([0]) + b"\x01\x04" + bytes(4))  # a Destination Options header of 8 bytes of padding
_AH = (51, bytes([1]) + bytes(10))  # an Authentication Header of (1 + 2) * 4 = 12 bytes
_V6_CHAIN = [hop_by_hop(1), _DEST_OPTS, fragment_header(0, more=True), _AH]

SHAPES: tuple[Shape, ...] = (
    Shape(
        "tcp4",
        ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(40000, 80, SYN | ACK))),
        l4_at=34,
        protocol=6,
        ports=(40000, 80),
        tcp_flags=SYN | ACK,
    ),
    Shape(
        "tcp4 with options and NS",
        ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(1, 65535, FIN | PSH | CWR, ns=True), options=b"\x01" * 8)),
        l4_at=42,
        protocol=6,
        ports=(1, 65535),
        tcp_flags=FIN | PSH | CWR | TCP_NS,
    ),
    Shape(
        "udp4 in a VLAN",
        ether(ipv4(CLIENT_V4, DNS_V4, 17, udp(5353, 53, b"q" * 4)), vlans=[100]),
        vlans=(100,),
        dst=DNS_V4,
        l4_at=38,
        protocol=17,
        ports=(5353, 53),
    ),
    Shape(
        "sctp4 in two VLANs",
        ether(ipv4(CLIENT_V4, SERVER_V4, 132, sctp(7, 9)), vlans=[100, 4095]),
        vlans=(100, 4095),
        l4_at=42,
        protocol=132,
        ports=(7, 9),
    ),
    Shape(
        "icmp4",
        ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(3, 3))),
        l4_at=34,
        protocol=1,
        ports=(3, 3),
    ),
    Shape(
        "later ipv4 fragment",
        ether(ipv4(CLIENT_V4, SERVER_V4, 17, b"x" * 16, fragment_offset=185)),
        fragment_at=34,
    ),
    Shape(
        "tcp6 behind hop-by-hop, destination options, a first fragment and AH",
        ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(443, 50000, ACK), _V6_CHAIN), ETH_P_IPV6),
        ethertype=ETH_P_IPV6,
        family=6,
        src=CLIENT_V6,
        dst=SERVER_V6,
        l4_at=14 + 40 + 16 + 8 + 8 + 12,
        protocol=6,
        ports=(443, 50000),
        tcp_flags=ACK,
    ),
    Shape(
        "icmp6",
        ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(128)), ETH_P_IPV6),
        ethertype=ETH_P_IPV6,
        family=6,
        src=CLIENT_V6,
        dst=SERVER_V6,
        l4_at=54,
        protocol=58,
        ports=(128, 0),
    ),
    Shape(
        "later ipv6 fragment",
        ether(ipv6(CLIENT_V6, SERVER_V6, 17, b"y" * 8, [hop_by_hop(0), fragment_header(100)]), ETH_P_IPV6),
        ethertype=ETH_P_IPV6,
        family=6,
        src=CLIENT_V6,
        dst=SERVER_V6,
        fragment_at=14 + 40 + 8 + 8,
    ),
    Shape("arp", arp(), ethertype=ETH_P_ARP, family=0),
)


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def check_cut(shape: Shape, n: int) -> None:
    """Every field of `shape.frame[:n]` is decoded iff its bytes are there, and is then right."""
    frame = shape.frame
    p = parse_packet(frame[:n])
    assert p.truncated == (0 < n < shape.headers_end), "truncated"
    assert (p.dst_mac, p.src_mac) == ((frame[:6], frame[6:12]) if n >= 12 else (b"", b"")), "MAC addresses"
    assert p.vlans == (shape.vlans[: (n - 14) // 4] if n >= 14 else ()), "VLAN ids"
    assert p.ethertype == (shape.ethertype if n >= shape.ip_at else 0), "ethertype"
    if shape.family:
        assert p.src_ip == (_packed(shape.src) if n >= shape.src_end else b""), "source address"
        assert p.dst_ip == (_packed(shape.dst) if n >= shape.dst_end else b""), "destination address"
        assert p.ip_version == (shape.family if n >= shape.dst_end else 0), "IP version"
    else:
        assert (p.src_ip, p.dst_ip, p.ip_version) == (b"", b"", 0), "no IP"
    assert p.fragment == bool(shape.fragment_at and n >= shape.fragment_at), "fragment"
    has_ports = bool(shape.l4_at) and n >= shape.ports_at()
    assert p.l4 == has_ports, "L4"
    if has_ports:
        assert (p.protocol, p.sport, p.dport) == (shape.protocol, *shape.ports), "protocol and ports"
    has_flags = shape.tcp_flags is not None and n >= shape.l4_at + _TCP_FLAGS_END
    assert p.tcp_flags == (shape.tcp_flags if has_flags else None), "TCP flags"


def check_cut_decoded(decoder: FlowDecoder, shape: Shape, n: int) -> None:
    """The decoded flow of a cut, twice: with a header that knows nothing more, and with one from the whole packet
    (the datapath parses the whole packet and keeps its first bytes)."""
    frame, p = shape.frame, parse_packet(shape.frame[:n])
    bare = record(b"")
    bare["data"], bare["len_cap"] = frame[:n].ljust(events.DEFAULT_CAPLEN, b"\0"), n
    flow = decoder.decode(bare[0], n)
    assert flow.flowscope.truncated == p.truncated
    assert flow.IP.source == (_text(p.src_ip) if p.src_ip else ""), "source address"
    assert flow.IP.destination == (_text(p.dst_ip) if p.dst_ip else ""), "destination address"
    assert _l4_of(flow) == ((p.protocol, p.sport, p.dport) if p.l4 else None), "L4"
    assert bool(flow.Summary) == (n >= 12)

    whole = decoder.decode(record(frame, len_cap=n)[0], n)
    assert whole.flowscope.truncated == p.truncated
    if shape.family:
        assert (whole.IP.source, whole.IP.destination) == (shape.src, shape.dst), "addresses from the header"
    if shape.l4_at:
        assert _l4_of(whole) == (shape.protocol, *shape.ports), "ports from the header"
    if shape.tcp_flags is not None:  # the header's column has no NS: the bytes alone say it
        bits = shape.tcp_flags if n >= shape.l4_at + _TCP_FLAGS_END else shape.tcp_flags & 0xFF
        assert whole.l4.TCP.flags == _flags_message(bits), "TCP flags"


def _text(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def _l4_of(flow: flow_pb2.Flow) -> tuple[int, int, int] | None:
    """(protocol, source port or ICMP type, destination port or ICMP code) of a flow's L4, or None."""
    l4 = flow.l4
    which = l4.WhichOneof("protocol")
    if which is None:
        return None
    if which in ("ICMPv4", "ICMPv6"):
        icmp = getattr(l4, which)
        return (1 if which == "ICMPv4" else 58), icmp.type, icmp.code
    ports = getattr(l4, which)
    return {"TCP": 6, "UDP": 17, "SCTP": 132}[which], ports.source_port, ports.destination_port


_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def _flags_message(bits: int) -> flow_pb2.TCPFlags:
    return flow_pb2.TCPFlags(**{name: True for i, name in enumerate(_FLAG_NAMES) if bits >> i & 1})


# --- random and mutated records ----------------------------------------------------------------------------


def check_prefix(data: bytes, m: int) -> None:
    """A field decoded from the first `m` bytes is never contradicted by the whole `data`."""
    whole, cut = parse_packet(data), parse_packet(data[:m])
    if whole.truncated and m:
        assert cut.truncated, "the whole ends inside a header, a prefix of it does not"
    assert whole.vlans[: len(cut.vlans)] == cut.vlans, "VLAN ids"
    for name in ("dst_mac", "src_mac", "ethertype", "src_ip", "dst_ip", "ip_version", "fragment", "l4"):
        value = getattr(cut, name)
        assert not value or value == getattr(whole, name), name
    if cut.l4:
        assert (cut.protocol, cut.sport, cut.dport) == (whole.protocol, whole.sport, whole.dport), "ports"
    if cut.tcp_flags is not None:
        assert cut.tcp_flags == whole.tcp_flags, "TCP flags"


def check_flow(flow: flow_pb2.Flow, r: np.void, p: Packet) -> None:
    """The flow agrees with what the captured bytes said (they win over the header's columns)."""
    if p.ip_version:
        assert (flow.IP.source, flow.IP.destination) == (_text(p.src_ip), _text(p.dst_ip)), "addresses"
    if p.l4 and p.protocol in _COMPLETE:
        assert _l4_of(flow) == (p.protocol, p.sport, p.dport), "L4"
    if p.tcp_flags is not None and p.l4 and p.protocol == 6:
        assert flow.l4.TCP.flags == _flags_message(p.tcp_flags), "TCP flags"
    captured = int(r["len_cap"])
    truncated = p.truncated if captured else bool(int(r["flags"]) & events.F_TRUNCATED)
    assert flow.flowscope.truncated == truncated, "truncated"
    assert flow_pb2.Flow.FromString(flow.SerializeToString()) == flow, "wire round trip"


@dataclass
class Outcome:
    cases: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (case, what, the record in hex)


_RANDOM_COLUMNS: dict[str, Callable[[random.Random], int]] = {
    "type": lambda rng: (
        rng.choice((names.EVENT_TRACE, names.EVENT_DROP, names.EVENT_POLICY_VERDICT, 2))
        if rng.random() < 0.7
        else rng.randrange(256)
    ),
    "subtype": lambda rng: rng.randrange(256),
    "flags": lambda rng: rng.randrange(256),
    "len_cap": lambda rng: rng.choice((0, rng.randrange(241), rng.randrange(1 << 16))),
    "verdict": lambda rng: rng.randrange(256),
    "trace_reason": lambda rng: rng.randrange(256),
    "drop_reason": lambda rng: rng.choice((rng.randrange(256), rng.randrange(1 << 32))),
    "policy_flags": lambda rng: rng.randrange(256),
    "ep_id": lambda rng: rng.choice((0, 1001, 1002, rng.randrange(1 << 16))),
    "ifindex": lambda rng: rng.choice((0, 2, 11, rng.randrange(1 << 32))),
    "rule": lambda rng: rng.randrange(1 << 32),
    "location": lambda rng: rng.randrange(1 << 64),
    "cpu": lambda rng: rng.randrange(256),
    "ts": lambda rng: rng.randrange(1 << 64),
    "bytes": lambda rng: rng.randrange(1 << 64),
}


class Fuzzer:
    """Makes case `i` of a seeded run and checks it; `run` counts what failed instead of stopping at it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.decoder = FlowDecoder("node1", lab_registry(), b"fuzz", {3: "NO_SOCKET"}, lambda address: None)
        self.valid = [record(shape.frame)[0] for shape in SHAPES]
        self.dtype = events.event_dtype()

    def make(self) -> np.void:
        """One record: a valid one mutated byte-wise, given random columns, random bytes behind a valid start,
        cut short, or random throughout."""
        rng = self.rng
        out = np.array([rng.choice(self.valid)], dtype=self.dtype)
        kind = rng.randrange(5)
        if kind == 0:
            raw = bytearray(out.tobytes())
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            out = np.frombuffer(bytes(raw), dtype=self.dtype).copy()
        elif kind == 1:
            for column in rng.sample(list(_RANDOM_COLUMNS), rng.randint(1, 6)):
                out[column] = _RANDOM_COLUMNS[column](rng)
        elif kind == 2:
            data = bytes(out["data"][0])
            keep = rng.randrange(len(data))
            out["data"] = data[:keep] + rng.randbytes(len(data) - keep)
            out["len_cap"] = rng.randrange(len(data) + 1)
        elif kind == 3:
            out["len_cap"] = rng.randrange(int(out["len_cap"][0]) + 1)
            if rng.random() < 0.5:  # and the datapath's columns knew no more than the bytes
                out["saddr"] = out["daddr"] = bytes(16)
                for column in ("sport", "dport", "tcp_flags", "flags", "ethertype", "l4_proto"):
                    out[column] = 0
        else:
            out = np.frombuffer(rng.randbytes(self.dtype.itemsize), dtype=self.dtype).copy()
        return out[0]

    def check(self, r: np.void, seq: int) -> None:
        flow = self.decoder.decode(r, seq)
        data = bytes(r["data"])[: int(r["len_cap"])]
        check_flow(flow, r, parse_packet(data))
        if len(data) > 1:
            check_prefix(data, self.rng.randrange(1, len(data)))
        if seq % 16 == 0:
            json_format.MessageToJson(flow)  # what `-o json` does with it
        if int(r["type"]) == names.EVENT_LOST:
            self.decoder.decode_lost(r).SerializeToString()

    def run(self, cases: int) -> Outcome:
        outcome = Outcome()
        start = time.perf_counter()
        for seq in range(cases):
            r = self.make()
            try:
                self.check(r, seq)
            except Exception as exc:  # counted, and reported with the record that raised it
                outcome.failures.append((seq, f"{type(exc).__name__}: {exc}", r.tobytes().hex()))
        outcome.cases, outcome.seconds = cases, time.perf_counter() - start
        return outcome
