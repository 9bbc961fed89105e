"""Test helpers: packets built byte by byte, stored records around them, and a small cluster to name them.

Packets are made with struct from the header fields, so a test says exactly what is on the wire. `record()`
wraps a packet into the agent's stored record the way the datapath would: it fills the header's parsed
columns (addresses, ports, protocol, flags) from the packet, and any column can be overridden by keyword.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

import numpy as np

from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import Cluster, Endpoint, Node
from flowscope.observer.parser.packet import parse_packet

TS = 1_700_000_000_123_456_789  # wall-clock ns of every record unless told otherwise
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"

# TCP flags byte
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# A record's conntrack flags: the datapath knew the packet's direction (KNOWN: it was not a reply; REPLY: it was).
KNOWN = events.F_REPLY_KNOWN
REPLY = events.F_REPLY_KNOWN | events.F_REPLY

# The kernel's drop reasons a decoder is told of (from BTF in the agent), for records of kernel drops.
KERNEL_REASONS = {2: "NOT_SPECIFIED", 3: "NO_SOCKET"}

# The lab cluster the tests name flows with.
CLIENT_V4, CLIENT_V6 = "10.200.1.11", "fd00:200:1::11"
SERVER_V4, SERVER_V6 = "10.200.1.12", "fd00:200:1::12"
DNS_V4 = "10.200.2.21"
NODE1_V4, NODE2_V4 = "10.77.0.1", "10.77.0.2"
WORLD_V4 = "93.184.216.34"
IFINDEX = {"lxc1001": 11, "lxc1002": 12, "eth0": 2}

CLIENT = Endpoint(1001, "node1", "default", "client-7d9f", {"app": "client"}, "lxc1001", ipv4=CLIENT_V4, ipv6=CLIENT_V6)
SERVER = Endpoint(
    1002,
    "node1",
    "default",
    "server-5c4b",
    {"app": "server", "tier": "web"},
    "lxc1002",
    ipv4=SERVER_V4,
    ipv6=SERVER_V6,
)
DNS = Endpoint(2001, "node2", "kube-system", "coredns-abc", {"k8s-app": "kube-dns"}, "lxc2001", ipv4=DNS_V4)
LAB = Cluster(
    name="lab",
    nodes=(Node("node1", ipv4=NODE1_V4, ipv6="fd77::1"), Node("node2", ipv4=NODE2_V4)),
    endpoints=(CLIENT, SERVER, DNS),
)


def lab_registry(node: str = "node1", cluster: Cluster = LAB) -> EndpointRegistry:
    registry = EndpointRegistry(node, cluster)
    for name, index in IFINDEX.items():
        registry.set_interface(index, name)
    return registry


# --- packets ---------------------------------------------------------------------------------------------


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ether(
    payload: bytes, ethertype: int = 0x0800, *, src: str = MAC_A, dst: str = MAC_B, vlans: Sequence[int] = ()
) -> bytes:
    """An Ethernet frame; `vlans` are the VLAN ids of 802.1Q tags, outermost first."""
    tags = b"".join(struct.pack("!HH", 0x8100, vid) for vid in vlans)
    return mac(dst) + mac(src) + tags + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str,
    dst: str,
    protocol: int,
    payload: bytes = b"",
    *,
    fragment_offset: int = 0,
    more_fragments: bool = False,
    options: bytes = b"",
    ttl: int = 64,
) -> bytes:
    """An IPv4 packet; `fragment_offset` in 8-byte units, `options` padded to 4 bytes by the caller."""
    ihl = 5 + len(options) // 4
    flags_offset = (0x2000 if more_fragments else 0) | fragment_offset
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(payload),
        1,
        flags_offset,
        ttl,
        protocol,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + payload


def ipv6(
    src: str, dst: str, next_header: int, payload: bytes = b"", extensions: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """An IPv6 packet; `extensions` are (header type, header bytes without its next-header byte) in order."""
    chain = b""
    types = [header_type for header_type, _ in extensions] + [next_header]
    for (_, body), following in zip(extensions, types[1:], strict=True):
        chain += bytes([following]) + body
    first = types[0]
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(chain) + len(payload),
        first,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + chain + payload


def hop_by_hop(units: int = 0) -> tuple[int, bytes]:
    """A Hop-by-Hop options header (8 * (units + 1) bytes) of padding."""
    return 0, bytes([units]) + b"\x01\x04" + bytes(4) + bytes(8 * units)


def fragment_header(offset: int = 0, more: bool = False) -> tuple[int, bytes]:
    return 44, b"\x00" + struct.pack("!HI", offset << 3 | int(more), 0x1234)


def tcp(sport: int, dport: int, flags: int = SYN, *, ns: bool = False, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4 | int(ns), flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def sctp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHII", sport, dport, 7, 0) + bytes([1, 0]) + struct.pack("!H", 4)


def icmp4(icmp_type: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1)


def icmp6(icmp_type: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1)


def arp(sender: str = CLIENT_V4, target: str = SERVER_V4) -> bytes:
    body = struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        1,
        mac(MAC_A),
        ipaddress.IPv4Address(sender).packed,
        bytes(6),
        ipaddress.IPv4Address(target).packed,
    )
    return ether(body, 0x0806, dst="ff:ff:ff:ff:ff:ff")


def tcp4(
    src: str = CLIENT_V4,
    dst: str = SERVER_V4,
    sport: int = 40000,
    dport: int = 80,
    flags: int = SYN,
    **kw: bool,
) -> bytes:
    """The everyday case: a TCP segment over IPv4 over Ethernet."""
    return ether(ipv4(src, dst, 6, tcp(sport, dport, flags, **kw)))


def udp4(src: str = CLIENT_V4, dst: str = DNS_V4, sport: int = 40000, dport: int = 53) -> bytes:
    return ether(ipv4(src, dst, 17, udp(sport, dport, b"\x00" * 12)))


# --- records ---------------------------------------------------------------------------------------------


def _columns(packet: bytes) -> dict[str, int | bytes]:
    """The header columns the datapath fills from a packet."""
    parsed = parse_packet(packet)
    flags = 0
    if parsed.ip_version == 6:
        flags |= events.F_IPV6
    if parsed.l4:
        flags |= events.F_L4
    if parsed.fragment:
        flags |= events.F_FRAGMENT
    if parsed.truncated:
        flags |= events.F_TRUNCATED
    return {
        "ethertype": parsed.ethertype,
        "flags": flags,
        "saddr": parsed.src_ip.ljust(16, b"\0"),
        "daddr": parsed.dst_ip.ljust(16, b"\0"),
        "l4_proto": parsed.protocol if parsed.ip_version else 0,
        "sport": parsed.sport,
        "dport": parsed.dport,
        "tcp_flags": (parsed.tcp_flags or 0) & 0xFF,
    }


def record(packet: bytes = b"", caplen: int = events.DEFAULT_CAPLEN, **fields: int | bytes) -> np.ndarray:
    """One stored record, as a 1-element array; `packet` is captured up to caplen (or `len_cap=`) bytes.

    Defaults: a FORWARDED trace at TO_LXC, seen on the server's interface, one packet. `flags=` is ORed into
    the flags derived from the packet (F_IPV6, F_L4, ...); every other keyword replaces a column.
    """
    out = np.zeros(1, dtype=events.event_dtype(caplen))
    row = out[0]
    values: dict[str, int | bytes] = {
        "ts": TS,
        "type": names.EVENT_TRACE,
        "subtype": names.TRACE_TO_LXC,
        "version": events.EVENT_VERSION,
        "ifindex": IFINDEX["lxc1002"],
        "ep_id": SERVER.id,
        "len_orig": len(packet),
        "len_cap": min(len(packet), caplen),
        "verdict": names.VERDICT_FORWARDED,
        "packets": 1,
        "bytes": len(packet),
        **_columns(packet),
    }
    extra_flags = fields.pop("flags", 0)
    values.update(fields)
    values["flags"] = int(values["flags"]) | int(extra_flags)
    for name, value in values.items():
        row[name] = value
    row["data"] = packet[:caplen].ljust(caplen, b"\0")
    return out


def batch_of(*parts: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Records (or lists of them) joined into one array."""
    flat: list[np.ndarray] = []
    for part in parts:
        flat.extend([part] if isinstance(part, np.ndarray) else part)
    return np.concatenate(flat)


def lost_record(source: int = names.LOST_RING_OVERRUN, count: int = 7, cpu: int = 0xFF, ts: int = TS) -> np.ndarray:
    return record(type=names.EVENT_LOST, subtype=source, bytes=count, cpu=cpu, ts=ts, ifindex=0, ep_id=0)
