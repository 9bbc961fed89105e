"""Connection tracking on crafted packets (BPF_PROG_TEST_RUN): states, directions, ICMP, closing, counters,
and one entry per observation side."""

from __future__ import annotations

import collections
import ipaddress
import struct

import pytest
from dp_flows import (
    ESTABLISHED,
    IN,
    MEDIUM,
    NEW,
    OUT,
    PEER4,
    PEER6,
    POD4,
    POD6,
    RELATED,
    REPLY,
    Conversation,
    aggregate,
    echo,
    run,
    unreachable,
)
from dp_packets import (
    ACK,
    ETH_P_ARP,
    ETH_P_IP,
    FIN,
    IPPROTO_TCP,
    IPPROTO_UDP,
    RST,
    SYN,
    arp_request,
    eth,
    ipv4,
    udp,
)
from dp_run import EP_ID, EP_IDENTITY, LOOPBACK

from flowscope.common import names
from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath

pytestmark = pytest.mark.bpf

KNOWN, IS_REPLY = ev.F_REPLY_KNOWN, ev.F_REPLY | ev.F_REPLY_KNOWN


def state(events: object) -> tuple[int, int]:
    """(trace_reason, reply bits) of the one trace event a packet made."""
    assert len(events) == 1  # type: ignore[arg-type]
    event = events[0]  # type: ignore[index]
    return int(event["trace_reason"]), int(event["flags"]) & IS_REPLY


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_tcp_handshake_new_reply_established(dp: Datapath, ipv6: bool) -> None:
    conn = Conversation(IPPROTO_TCP, ipv6=ipv6)
    assert state(run(dp, OUT, conn.out(SYN))) == (NEW, KNOWN)
    assert state(run(dp, IN, conn.back(SYN | ACK))) == (REPLY, IS_REPLY)
    assert state(run(dp, OUT, conn.out(ACK, b"hello"))) == (ESTABLISHED, KNOWN)
    assert state(run(dp, IN, conn.back(ACK, b"hi"))) == (REPLY, IS_REPLY)

    [c] = dp.conntrack.connections()
    assert (c.scope, c.proto) == (EP_ID, IPPROTO_TCP)
    assert (c.source, c.source_port, c.destination, c.destination_port) == (conn.pod, 40000, conn.peer, 80)
    assert (c.original.packets, c.reply.packets) == (2, 2)
    assert c.original.bytes == len(conn.out(SYN)) + len(conn.out(ACK, b"hello"))
    assert c.reply.bytes == len(conn.back(SYN | ACK)) + len(conn.back(ACK, b"hi"))
    assert (c.original.flags_seen, c.reply.flags_seen) == (SYN | ACK, SYN | ACK)
    assert (c.original.point, c.reply.point) == (names.TRACE_FROM_LXC, names.TRACE_TO_LXC)


def test_the_opener_is_whoever_sent_first(dp: Datapath) -> None:
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=33333)
    assert state(run(dp, IN, conn.back(payload=b"query"))) == (NEW, KNOWN)
    assert state(run(dp, OUT, conn.out(payload=b"answer"))) == (REPLY, IS_REPLY)
    [c] = dp.conntrack.connections()
    assert (c.source, c.source_port, c.destination_port) == (PEER4, 33333, 53)


@pytest.mark.parametrize(("pod", "peer", "asking", "answer"), [(POD4, PEER4, 8, 0), (POD6, PEER6, 128, 129)])
def test_icmp_echo_is_a_connection_per_identifier(dp: Datapath, pod: str, peer: str, asking: int, answer: int) -> None:
    assert state(run(dp, OUT, echo(pod, peer, asking, ident=7))) == (NEW, KNOWN)
    assert state(run(dp, IN, echo(peer, pod, answer, ident=7))) == (REPLY, IS_REPLY)
    assert state(run(dp, OUT, echo(pod, peer, asking, ident=7, seq=2))) == (ESTABLISHED, KNOWN)
    assert state(run(dp, OUT, echo(pod, peer, asking, ident=8))) == (NEW, KNOWN)
    assert len(dp.conntrack.connections()) == 2


def test_icmp_error_quoting_a_connection_is_related(dp: Datapath) -> None:
    conn = Conversation(IPPROTO_UDP, peer_port=53)
    query = conn.out(payload=b"query")
    assert state(run(dp, OUT, query)) == (NEW, KNOWN)
    error = unreachable(PEER4, POD4, query[14:])
    assert state(run(dp, IN, error)) == (RELATED, IS_REPLY)
    [c] = dp.conntrack.connections()
    assert c.reply.packets == 1  # counted with the connection it is about


def test_icmp_error_about_nothing_known_is_its_own_connection(dp: Datapath) -> None:
    stray = Conversation(IPPROTO_UDP, pod_port=1111, peer_port=2222).out(payload=b"x")
    assert state(run(dp, IN, unreachable(PEER4, POD4, stray[14:]))) == (NEW, KNOWN)


def test_fin_then_a_new_syn_starts_over(dp: Datapath) -> None:
    conn = Conversation(IPPROTO_TCP)
    run(dp, OUT, conn.out(SYN))
    run(dp, IN, conn.back(SYN | ACK))
    run(dp, OUT, conn.out(FIN | ACK))
    assert state(run(dp, IN, conn.back(FIN | ACK))) == (REPLY, IS_REPLY)
    assert state(run(dp, OUT, conn.out(SYN))) == (NEW, KNOWN)
    [c] = dp.conntrack.connections()
    assert (c.original.packets, c.reply.packets) == (1, 0)


def test_rst_closes_both_ways(dp: Datapath) -> None:
    conn = Conversation(IPPROTO_TCP)
    run(dp, OUT, conn.out(SYN))
    run(dp, IN, conn.back(RST | ACK))
    _, entries = dp.conntrack.read()
    assert entries["closing"].tolist() == [[1, 1]]
    assert state(run(dp, OUT, conn.out(SYN))) == (NEW, KNOWN)


def test_each_observation_side_keeps_its_own_entry(dp: Datapath) -> None:
    """The same packet seen on the endpoint's device and on the node's: two entries, each counting it once."""
    conn = Conversation(IPPROTO_TCP)
    assert state(run(dp, OUT, conn.out(SYN))) == (NEW, KNOWN)
    dp.remove_endpoint(LOOPBACK)  # loopback plays the node's device for a moment
    assert state(run(dp, "to_netdev", conn.out(SYN))) == (NEW, KNOWN)
    assert state(run(dp, "from_netdev", conn.back(SYN | ACK))) == (REPLY, IS_REPLY)
    dp.set_endpoint(LOOPBACK, EP_ID, EP_IDENTITY)
    assert state(run(dp, IN, conn.back(SYN | ACK))) == (REPLY, IS_REPLY)
    by_scope = {c.scope: c for c in dp.conntrack.connections()}
    assert sorted(by_scope) == [0, EP_ID]
    for c in by_scope.values():
        assert (c.original.packets, c.reply.packets) == (1, 1)
    assert (by_scope[0].original.point, by_scope[0].reply.point) == (names.TRACE_TO_NETWORK, names.TRACE_FROM_NETWORK)


def test_non_ip_and_later_fragments_are_not_tracked(dp: Datapath) -> None:
    arp = eth(ETH_P_ARP, arp_request(POD4, PEER4))
    fragment = eth(ETH_P_IP, ipv4(POD4, PEER4, IPPROTO_UDP, udp(1, 2), frag_offset=10))
    for packet in (arp, fragment):
        [event] = run(dp, OUT, packet)
        assert (int(event["trace_reason"]), int(event["flags"]) & KNOWN) == (0, 0)
    assert dp.conntrack.connections() == []


def home_slot(dp: Datapath, key: bytes) -> int:
    """Where the datapath puts an IPv4 key first (cttable.h's fs_ct_home, with this load's seed)."""
    h = dp.ct_seed
    for (word,) in struct.iter_unpack("<Q", key):
        h = ((h ^ word) * 0x9E3779B97F4A7C15) % 2**64
        h ^= h >> 29
    return h % 2**32 % dp.conntrack.slots


def ct4_key(src: str, sport: int, dst: str, dport: int, proto: int, scope: int) -> bytes:
    """An IPv4 connection's key as ct4 has it: the lower (address as a native word, port) end first."""
    ends = sorted(
        [(ipaddress.ip_address(src).packed, sport), (ipaddress.ip_address(dst).packed, dport)],
        key=lambda end: (int.from_bytes(end[0], "little"), end[1]),
    )
    return ends[0][0] + ends[1][0] + struct.pack("<HHBBH", ends[0][1], ends[1][1], proto, 4, scope)


def test_a_full_window_gives_way_to_the_connection_expiring_first(dp: Datapath) -> None:
    """Five connections with one home slot: the fifth takes the slot of the first, which reports the counts it
    had not reported yet (an LRU hash lost them)."""
    aggregate(dp, MEDIUM)
    homes = collections.defaultdict(list)
    for port in range(1024, 65536):
        homes[home_slot(dp, ct4_key(PEER4, 53, POD4, port, IPPROTO_UDP, EP_ID))].append(port)
    ports = next(found for found in homes.values() if len(found) >= 5)[:5]
    conns = [Conversation(IPPROTO_UDP, pod_port=port, peer_port=53) for port in ports]
    for conn in conns[:4]:  # into the pod (a point that reports): the first opens, the other two wait
        assert [len(run(dp, IN, conn.back(payload=b"x" * n))) for n in (1, 2, 3)] == [1, 0, 0]
    assert sorted(c.destination_port for c in dp.conntrack.connections()) == sorted(ports[:4])

    report, opened = run(dp, IN, conns[4].back(payload=b"y"))
    assert (int(report["flags"]) & ev.F_AGGREGATE, int(report["dport"])) == (ev.F_AGGREGATE, ports[0])
    assert (int(report["packets"]), int(report["bytes"])) == (2, len(conns[0].back(payload=b"xx")) * 2 + 1)
    assert (int(opened["trace_reason"]), int(opened["dport"])) == (NEW, ports[4])
    assert sorted(c.destination_port for c in dp.conntrack.connections()) == sorted(ports[1:])


def test_a_connection_first_seen_mid_stream_reports_no_direction(dp: Datapath) -> None:
    """Its first packet is the server's data: no SYN says who opened it, so neither way is called a reply (and
    no trace reason tells one); a new SYN after it closes starts a connection whose direction is known again."""
    conn = Conversation(IPPROTO_TCP, pod_port=44444, peer_port=80)
    assert state(run(dp, IN, conn.back(ACK, b"server data"))) == (0, 0)
    assert state(run(dp, OUT, conn.out(ACK, b"client data"))) == (0, 0)
    assert state(run(dp, IN, conn.back(ACK))) == (0, 0)
    run(dp, OUT, conn.out(RST | ACK))
    assert state(run(dp, OUT, conn.out(SYN))) == (NEW, KNOWN)
    assert state(run(dp, IN, conn.back(SYN | ACK))) == (REPLY, IS_REPLY)


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_the_agent_finds_an_entry_where_the_datapath_put_it(dp: Datapath, ipv6: bool) -> None:
    """ConntrackTable.find (kernel drops ask it for their direction) hashes a key as fs_ct_home does."""
    conversations = [Conversation(IPPROTO_UDP, pod_port=20000 + i, peer_port=53, ipv6=ipv6) for i in range(40)]
    for conn in conversations:
        run(dp, OUT, conn.out(payload=b"query"))
    keys, entries = dp.conntrack.read()
    assert len(keys) == len(conversations)
    for key, entry in zip(keys, entries, strict=True):
        raw = key.tobytes() if ipv6 else _narrow(key)
        found = dp.conntrack.find(raw)
        assert found is not None and found.tobytes() == entry.tobytes()
    missing = bytearray(raw)
    missing[0] ^= 0xFF  # an address no packet came from
    assert dp.conntrack.find(bytes(missing)) is None


def _narrow(key: object) -> bytes:
    """An IPv4 key as ct4 holds it (read() widens it to the IPv6 layout)."""
    raw = key.tobytes()  # type: ignore[attr-defined]
    return raw[0:4] + raw[16:20] + raw[32:40]
