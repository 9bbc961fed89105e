"""Each crafted packet yields exactly the event expected, and passes unchanged (BPF_PROG_TEST_RUN).

The packets run through from-container on loopback, which the fixture makes endpoint EP_ID: so the source
identity is the endpoint's, and the destination's comes from the (empty) ipcache: world, or 0 when the packet
has no destination address to look up.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from dp_packets import (
    ACK,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_LLDP,
    IPPROTO_AH,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_GRE,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PSH,
    SYN,
    arp_request,
    eth,
    ext_ah,
    ext_fragment,
    ext_opts,
    ext_routing,
    icmp,
    ipv4,
    ipv6,
    lldp,
    sctp,
    tcp,
    udp,
)
from dp_run import WORLD, assert_event, expected_trace, run_one

from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath, RuntimeConfig

pytestmark = pytest.mark.bpf

S4, D4 = "192.0.2.10", "198.51.100.20"
S6, D6 = "2001:db8::10", "2001:db8:1::20"
TRUNC, L4, FRAG, V6 = ev.F_TRUNCATED, ev.F_L4, ev.F_FRAGMENT, ev.F_IPV6
NEW = 1  # flow.TraceReason

TAG = (ETH_P_8021Q, 42)
IP4 = {"ethertype": ETH_P_IP, "saddr": S4, "daddr": D4, "dst_identity": WORLD}
IP6 = {"ethertype": ETH_P_IPV6, "saddr": S6, "daddr": D6, "dst_identity": WORLD, "flags": V6}


def case(name: str, packet: bytes, **fields: Any) -> Any:
    return pytest.param(packet, fields, id=name)


def v4(proto: int, payload: bytes, **kw: Any) -> bytes:
    return eth(ETH_P_IP, ipv4(S4, D4, proto, payload, **kw))


def v6(nexthdr: int, payload: bytes) -> bytes:
    return eth(ETH_P_IPV6, ipv6(S6, D6, nexthdr, payload))


CASES = [
    # IPv4 and its L4 protocols
    case(
        "tcp4",
        v4(IPPROTO_TCP, tcp(40000, 80, SYN)),
        **IP4,
        l4_proto=6,
        flags=L4,
        sport=40000,
        dport=80,
        tcp_flags=SYN,
    ),
    case("udp4", v4(IPPROTO_UDP, udp(5353, 53, b"query")), **IP4, l4_proto=17, flags=L4, sport=5353, dport=53),
    case("icmp4-echo", v4(IPPROTO_ICMP, icmp(8, 0)), **IP4, l4_proto=1, flags=L4, sport=8, dport=0),
    case("icmp4-unreachable", v4(IPPROTO_ICMP, icmp(3, 3)), **IP4, l4_proto=1, flags=L4, sport=3, dport=3),
    case("sctp4", v4(IPPROTO_SCTP, sctp(3868, 3869)), **IP4, l4_proto=132, flags=L4, sport=3868, dport=3869),
    case("gre4-no-ports", v4(IPPROTO_GRE, bytes(8)), **IP4, l4_proto=IPPROTO_GRE),
    case(
        "ipv4-options",
        v4(IPPROTO_UDP, udp(1, 2), options=b"\x01\x01\x01\x00"),
        **IP4,
        l4_proto=17,
        flags=L4,
        sport=1,
        dport=2,
    ),
    case(
        "ipv4-first-fragment",
        v4(IPPROTO_UDP, udp(7, 8, bytes(32)), more=True),
        **IP4,
        l4_proto=17,
        flags=L4,
        sport=7,
        dport=8,
    ),
    case(
        "ipv4-middle-fragment",
        v4(IPPROTO_UDP, bytes(32), frag_offset=185, more=True),
        **IP4,
        l4_proto=17,
        flags=FRAG,
    ),
    case("ipv4-last-fragment", v4(IPPROTO_TCP, bytes(32), frag_offset=370), **IP4, l4_proto=6, flags=FRAG),
    # IPv6, its L4 protocols and extension headers
    case(
        "tcp6",
        v6(IPPROTO_TCP, tcp(443, 50000, SYN | ACK)),
        **IP6 | {"flags": V6 | L4},
        l4_proto=6,
        sport=443,
        dport=50000,
        tcp_flags=SYN | ACK,
    ),
    case("udp6", v6(IPPROTO_UDP, udp(546, 547)), **IP6 | {"flags": V6 | L4}, l4_proto=17, sport=546, dport=547),
    case(
        "icmp6-echo",
        v6(IPPROTO_ICMPV6, icmp(128, 0)),
        **IP6 | {"flags": V6 | L4},
        l4_proto=58,
        sport=128,
        dport=0,
    ),
    case("sctp6", v6(IPPROTO_SCTP, sctp(9, 10)), **IP6 | {"flags": V6 | L4}, l4_proto=132, sport=9, dport=10),
    case("ipv6-no-next-header", v6(IPPROTO_NONE, b""), **IP6, l4_proto=IPPROTO_NONE),
    case(
        "ipv6-hop-by-hop",
        v6(IPPROTO_HOPOPTS, ext_opts(IPPROTO_UDP) + udp(11, 12)),
        **IP6 | {"flags": V6 | L4},
        l4_proto=17,
        sport=11,
        dport=12,
    ),
    case(
        "ipv6-every-extension",
        v6(
            IPPROTO_HOPOPTS,
            ext_opts(IPPROTO_DSTOPTS, units=1)
            + ext_opts(IPPROTO_ROUTING)
            + ext_routing(IPPROTO_FRAGMENT)
            + ext_fragment(IPPROTO_AH, offset=0, more=True)
            + ext_ah(IPPROTO_TCP)
            + tcp(22, 60000, PSH | ACK),
        ),
        **IP6 | {"flags": V6 | L4},
        l4_proto=6,
        sport=22,
        dport=60000,
        tcp_flags=PSH | ACK,
    ),
    case(
        "ipv6-first-fragment",
        v6(IPPROTO_FRAGMENT, ext_fragment(IPPROTO_UDP, 0, more=True) + udp(13, 14, bytes(40))),
        **IP6 | {"flags": V6 | L4},
        l4_proto=17,
        sport=13,
        dport=14,
    ),
    case(
        "ipv6-later-fragment",
        v6(IPPROTO_FRAGMENT, ext_fragment(IPPROTO_UDP, 181) + bytes(40)),
        **IP6 | {"flags": V6 | FRAG},
        l4_proto=17,
    ),
    case(
        "ipv6-fragment-after-hop-by-hop",
        v6(IPPROTO_HOPOPTS, ext_opts(IPPROTO_FRAGMENT) + ext_fragment(IPPROTO_TCP, 5) + bytes(16)),
        **IP6 | {"flags": V6 | FRAG},
        l4_proto=6,
    ),
    # VLAN tags
    case(
        "vlan",
        eth(ETH_P_IP, ipv4(S4, D4, IPPROTO_UDP, udp(15, 16)), vlans=((ETH_P_8021Q, 100),)),
        **IP4,
        l4_proto=17,
        flags=L4,
        sport=15,
        dport=16,
    ),
    case(
        "qinq",
        eth(
            ETH_P_IPV6,
            ipv6(S6, D6, IPPROTO_TCP, tcp(17, 18, SYN)),
            vlans=((ETH_P_8021AD, 10), (ETH_P_8021Q, 20)),
        ),
        **IP6 | {"flags": V6 | L4},
        l4_proto=6,
        sport=17,
        dport=18,
        tcp_flags=SYN,
    ),
    case(
        "three-tags-stop-at-two",
        eth(ETH_P_IP, bytes(20), vlans=((ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3))),
        ethertype=ETH_P_8021Q,
    ),
    # Other ethertypes: no addresses, no identity to look up
    case("arp", eth(ETH_P_ARP, arp_request(S4, D4)), ethertype=ETH_P_ARP),
    case("lldp", eth(ETH_P_LLDP, lldp()), ethertype=ETH_P_LLDP),
    case("vlan-arp", eth(ETH_P_ARP, arp_request(S4, D4), vlans=((ETH_P_8021Q, 5),)), ethertype=ETH_P_ARP),
    # Packets that end inside a header: flagged, what follows it zero, still emitted
    case("cut-in-vlan-tag", eth(ETH_P_8021Q)[:-2] + b"\x81\x00\x00", ethertype=ETH_P_8021Q, flags=TRUNC),
    # (BPF_PROG_TEST_RUN refuses an untagged IPv4/IPv6 frame shorter than its IP header, so those cuts are
    # made behind a VLAN tag: the datapath parses them alike, the kernel's check does not look behind it.)
    case("cut-before-ipv4", eth(ETH_P_IP, vlans=(TAG,)), ethertype=ETH_P_IP, flags=TRUNC),
    case(
        "cut-in-ipv4",
        eth(ETH_P_IP, ipv4(S4, D4, IPPROTO_TCP)[:12], vlans=(TAG,)),
        ethertype=ETH_P_IP,
        flags=TRUNC,
    ),
    case(
        "cut-in-ipv4-options",
        v4(IPPROTO_UDP, b"", options=bytes(8))[: 14 + 24],
        **IP4,
        l4_proto=17,
        flags=TRUNC,
    ),
    case(
        "ipv4-ihl-too-small",
        eth(ETH_P_IP, bytes([0x44]) + ipv4(S4, D4, IPPROTO_UDP, udp(1, 2))[1:]),
        **IP4,
        l4_proto=17,
        flags=TRUNC,
    ),
    case("cut-in-tcp4", v4(IPPROTO_TCP, tcp(1, 2, SYN)[:12]), **IP4, l4_proto=6, flags=TRUNC),
    case("cut-in-udp4", v4(IPPROTO_UDP, udp(1, 2)[:6]), **IP4, l4_proto=17, flags=TRUNC),
    case("cut-in-icmp4", v4(IPPROTO_ICMP, icmp(8, 0)[:2]), **IP4, l4_proto=1, flags=TRUNC),
    case("cut-in-sctp4", v4(IPPROTO_SCTP, sctp(1, 2)[:8]), **IP4, l4_proto=132, flags=TRUNC),
    case(
        "cut-in-ipv6",
        eth(ETH_P_IPV6, ipv6(S6, D6, IPPROTO_TCP)[:30], vlans=(TAG,)),
        ethertype=ETH_P_IPV6,
        flags=V6 | TRUNC,
    ),
    case(
        "cut-in-extension-prefix",
        v6(IPPROTO_HOPOPTS, ext_opts(IPPROTO_TCP)[:2]),
        **IP6 | {"flags": V6 | TRUNC},
    ),
    case(
        "cut-in-extension-body",
        v6(IPPROTO_DSTOPTS, ext_opts(IPPROTO_TCP, units=1)[:10]),
        **IP6 | {"flags": V6 | TRUNC},
    ),
    case(
        "cut-in-fragment-header",
        v6(IPPROTO_FRAGMENT, ext_fragment(IPPROTO_UDP, 9)[:6]),
        **IP6 | {"flags": V6 | TRUNC},
    ),
    case("cut-in-tcp6", v6(IPPROTO_TCP, tcp(1, 2, SYN)[:19]), **IP6 | {"flags": V6 | TRUNC}, l4_proto=6),
    case(
        "cut-in-udp6-after-extension",
        v6(IPPROTO_HOPOPTS, ext_opts(IPPROTO_UDP) + udp(1, 2)[:7]),
        **IP6 | {"flags": V6 | TRUNC},
        l4_proto=17,
    ),
    case("cut-in-icmp6", v6(IPPROTO_ICMPV6, icmp(128, 0)[:3]), **IP6 | {"flags": V6 | TRUNC}, l4_proto=58),
]


@pytest.mark.parametrize(("packet", "fields"), CASES)
def test_packet_yields_its_event(dp: Datapath, packet: bytes, fields: dict[str, Any]) -> None:
    event = run_one(dp, "from_container", packet)
    assert_event(event, packet, expected_trace(packet, **opens_connection(fields)))


def opens_connection(fields: dict[str, Any]) -> dict[str, Any]:
    """Conntrack's part of the event: an IP packet it can follow (its headers whole, not a later fragment)
    opens a connection, so it is NEW and its direction is known (not a reply). A TCP packet other than a SYN
    is a connection seen mid-stream: tracked, but with no direction (nor a reason, which would tell one)."""
    flags = fields.get("flags", 0)
    if fields.get("ethertype") not in (ETH_P_IP, ETH_P_IPV6) or flags & (TRUNC | FRAG):
        return fields
    if fields.get("l4_proto") == IPPROTO_TCP and flags & L4 and fields.get("tcp_flags", 0) & (SYN | ACK) != SYN:
        return fields
    return {**fields, "trace_reason": NEW, "flags": flags | ev.F_REPLY_KNOWN}


def test_capture_is_the_first_caplen_bytes_of_a_long_packet(dp: Datapath) -> None:
    packet = v4(IPPROTO_UDP, udp(1000, 2000, bytes(range(256)) * 2))
    event = run_one(dp, "from_container", packet)
    assert int(event["len_orig"]) == len(packet) == int(event["bytes"])
    assert int(event["len_cap"]) == 128
    assert bytes(event["data"]) == packet[:128]


def test_capture_length_follows_the_runtime_config(dp: Datapath) -> None:
    packet = v4(IPPROTO_UDP, udp(1000, 2000, bytes(300)))
    dp.maps.write_config(RuntimeConfig(capture_len=64))
    assert dp.maps.read_config() == RuntimeConfig(capture_len=64)
    event = run_one(dp, "from_container", packet)
    assert int(event["len_cap"]) == 64
    assert bytes(event["data"])[:64] == packet[:64]

    dp.maps.write_config(RuntimeConfig(capture_len=4096))  # more than FS_CAPLEN: capped
    assert int(run_one(dp, "from_container", packet)["len_cap"]) == 128


def test_a_short_packet_is_captured_whole(dp: Datapath) -> None:
    packet = eth(ETH_P_ARP, arp_request(S4, D4))
    event = run_one(dp, "from_container", packet)
    assert int(event["len_cap"]) == len(packet) == 42
    assert bytes(event["data"])[:42] == packet


@pytest.mark.parametrize("size", [14, 15, 21, 60, 63, 64, 65, 100, 127, 128, 129, 300])
def test_capture_is_exact_at_every_length(dp: Datapath, size: int) -> None:
    """The capture is copied a word at a time, its last word ending at the capture length: every length comes
    out whole, whatever it is modulo 8."""
    packet = eth(ETH_P_LLDP, bytes((7 * i + 3) & 0xFF for i in range(size - 14)))
    event = run_one(dp, "from_container", packet)
    assert int(event["len_cap"]) == min(size, 128)
    assert bytes(event["data"])[: min(size, 128)] == packet[:128]


@pytest.mark.parametrize("capture_len", [1, 7, 9, 13, 61, 127])
def test_nothing_after_the_capture_length_is_copied(dp: Datapath, capture_len: int) -> None:
    """A capture length that is not a whole number of words: the packet's bytes after it never reach the
    record (what follows len_cap is left from earlier records, never this packet's next bytes)."""
    packet = eth(ETH_P_LLDP, bytes([0xA5]) * 200)
    dp.maps.write_config(RuntimeConfig(capture_len=capture_len))
    event = run_one(dp, "from_container", packet)
    data = bytes(event["data"])
    assert int(event["len_cap"]) == capture_len
    assert data[:capture_len] == packet[:capture_len]
    if capture_len >= 14:
        assert data[capture_len : capture_len + 8] != packet[capture_len : capture_len + 8]


def test_header_carries_cpu_and_hash(dp: Datapath) -> None:
    packet = v4(IPPROTO_TCP, tcp(40000, 80, SYN))
    first = run_one(dp, "from_container", packet)
    again = run_one(dp, "from_container", packet)
    assert int(first["cpu"]) < (os.cpu_count() or 1)
    assert int(first["hash"]) != 0  # the flow hash of an IPv4 TCP packet
    assert int(first["hash"]) == int(again["hash"])
    other = run_one(dp, "from_container", v4(IPPROTO_TCP, tcp(40001, 80, SYN)))
    assert int(other["hash"]) != int(first["hash"])
