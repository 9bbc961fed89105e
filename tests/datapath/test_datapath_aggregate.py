"""Monitor aggregation on crafted packets (BPF_PROG_TEST_RUN): which packets become events at each level, and
that the packets and bytes of a connection's reports add up to what passed, trailing counts included."""

from __future__ import annotations

import time

import numpy as np
import pytest
from dp_flows import (
    IN,
    LOW,
    LOWEST,
    MAXIMUM,
    MEDIUM,
    NEW,
    NONE,
    OUT,
    PEER4,
    PEER6,
    POD4,
    POD6,
    REPLY,
    SYN_FIN_RST,
    Conversation,
    aggregate,
    column,
    run,
)
from dp_packets import ACK, ETH_P_ARP, FIN, IPPROTO_TCP, IPPROTO_UDP, PSH, SYN, arp_request, eth
from dp_run import EP_ID, EP_IDENTITY, LOOPBACK, addr16

from flowscope.common import names
from flowscope.common.aggregation import AggregationSettings
from flowscope.observer import events as ev
from flowscope.observer.aggregation import Aggregation
from flowscope.observer.datapath import Datapath

pytestmark = pytest.mark.bpf

HOST = 1
PEER_IDENTITY = 6000


@pytest.fixture
def peer(dp: Datapath) -> Datapath:
    identities = {PEER4: PEER_IDENTITY, POD4: EP_IDENTITY, PEER6: PEER_IDENTITY, POD6: EP_IDENTITY}
    dp.replace_ipcache({f"{addr}/{128 if ':' in addr else 32}": identity for addr, identity in identities.items()})
    return dp


def test_none_traces_every_packet_at_every_point(peer: Datapath) -> None:
    aggregate(peer, NONE)
    conn = Conversation(IPPROTO_TCP)
    for program, packet in [(OUT, conn.out(SYN)), (IN, conn.back(SYN | ACK))] + [(OUT, conn.out(ACK))] * 5:
        [event] = run(peer, program, packet)
        assert (int(event["packets"]), int(event["bytes"])) == (1, len(packet))
        assert not int(event["flags"]) & ev.F_AGGREGATE


@pytest.mark.parametrize("level", [LOWEST, LOW])
def test_low_silences_the_points_packets_arrive_by(peer: Datapath, level: int) -> None:
    aggregate(peer, level)
    conn = Conversation(IPPROTO_TCP)
    assert len(run(peer, OUT, conn.out(SYN))) == 0  # to-netdev (or the peer's to-container) reports it
    for _ in range(3):
        [event] = run(peer, IN, conn.back(ACK))
        assert int(event["packets"]) == 1 and not int(event["flags"]) & ev.F_AGGREGATE


@pytest.mark.parametrize("level", [LOWEST, MEDIUM])
def test_a_packet_for_the_host_is_reported_where_it_arrives(peer: Datapath, level: int) -> None:
    """No TO_* point sees a packet the node itself receives: its FROM_* point must report it."""
    peer.replace_ipcache({f"{PEER4}/32": HOST})
    aggregate(peer, level)
    [event] = run(peer, OUT, Conversation(IPPROTO_UDP).out(payload=b"x"))
    assert (int(event["subtype"]), int(event["dst_identity"])) == (names.TRACE_FROM_LXC, HOST)


@pytest.mark.parametrize("level", [MEDIUM, MAXIMUM])
def test_medium_reports_open_flags_and_close_with_the_counts_between(peer: Datapath, level: int) -> None:
    aggregate(peer, level)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)  # the peer connects to the pod
    inbound = [conn.back(SYN)] + [conn.back(ACK, bytes(i)) for i in range(100)] + [conn.back(FIN | ACK)]
    events = [run(peer, IN, packet) for packet in inbound]
    assert [len(e) for e in events] == [1] + [0] * 100 + [1]
    assert len(run(peer, OUT, conn.out(SYN | ACK))) == 0  # from-container: silenced
    assert len(run(peer, OUT, conn.out(FIN | ACK))) == 0
    last = run(peer, IN, conn.back(ACK))  # both ways closing: reported at once, not left to the sweep
    opened, closed, final = events[0][0], events[-1][0], last[0]

    assert (int(opened["trace_reason"]), int(opened["packets"]), int(opened["bytes"])) == (NEW, 1, len(inbound[0]))
    assert int(opened["tcp_flags_seen"]) == SYN
    assert int(closed["packets"]) == 101
    assert int(closed["bytes"]) == sum(map(len, inbound[1:]))
    assert int(closed["tcp_flags_seen"]) == ACK | FIN
    assert int(final["packets"]) == 1
    for report in (opened, closed, final):
        assert int(report["flags"]) & ev.F_AGGREGATE
        assert (int(report["type"]), int(report["subtype"])) == (names.EVENT_TRACE, names.TRACE_TO_LXC)
    [c] = peer.conntrack.connections()
    assert c.original.packets == 103 and c.original.pending_packets == 0


def test_the_agent_starts_the_datapath_at_the_default_settings(peer: Datapath) -> None:
    """A config never written reads as level none with no flags, not as the defaults: the agent's Aggregation
    writes the settings it starts with at once, so its datapath aggregates at medium, syn,fin,rst from the first
    packet."""
    Aggregation(peer, AggregationSettings())
    config = peer.maps.read_config()
    assert (config.aggregation, config.report_interval_ms, config.report_flags) == (MEDIUM, 5000, SYN_FIN_RST)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    assert len(run(peer, IN, conn.back(SYN))) == 1
    assert len(run(peer, OUT, conn.out(SYN | ACK))) == 0  # from-container: silenced
    assert [len(run(peer, IN, conn.back(ACK | PSH, bytes(i)))) for i in range(10)] == [0] * 10  # PSH: not a default
    [closed] = run(peer, IN, conn.back(FIN | ACK))
    assert int(closed["packets"]) == 11 and int(closed["flags"]) & ev.F_AGGREGATE


def test_a_new_flag_in_the_mask_is_reported_once(peer: Datapath) -> None:
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    aggregate(peer, MEDIUM)
    run(peer, IN, conn.back(SYN))
    assert len(run(peer, IN, conn.back(ACK | PSH, b"a"))) == 0  # PSH is not in SYN|FIN|RST
    aggregate(peer, MEDIUM, flags=SYN_FIN_RST | PSH)  # changed at run time: the next packet obeys
    assert len(run(peer, IN, conn.back(ACK | PSH, b"b"))) == 0  # seen before: not new
    conn2 = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40001)
    run(peer, IN, conn2.back(SYN))
    [report] = run(peer, IN, conn2.back(ACK | PSH, b"c"))
    assert int(report["packets"]) == 1 and int(report["tcp_flags_seen"]) == ACK | PSH
    assert len(run(peer, IN, conn2.back(ACK | PSH, b"d"))) == 0


def test_a_busy_connection_reports_each_interval(peer: Datapath) -> None:
    aggregate(peer, MEDIUM, interval_ms=50)
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=5353)
    assert len(run(peer, IN, conn.back(payload=b"0"))) == 1
    quiet = [len(run(peer, IN, conn.back(payload=b"1"))) for _ in range(5)]
    time.sleep(0.06)
    [report] = run(peer, IN, conn.back(payload=b"2"))
    assert quiet == [0] * 5 and int(report["packets"]) == 6


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])  # ct4 and ct6, each with its own key
def test_the_sweep_reports_what_a_quiet_connection_left(peer: Datapath, ipv6: bool) -> None:
    aggregate(peer, MEDIUM)
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=5353, ipv6=ipv6)
    datagrams = [conn.back(payload=bytes(i)) for i in range(50)]
    made = [len(run(peer, IN, d)) for d in datagrams]
    assert made == [1] + [0] * 49
    assert peer.conntrack.sweep(interval_ns=10**12) == 0  # younger than the interval: left alone
    assert peer.conntrack.sweep(interval_ns=0) == 1
    [record] = peer.reader().read_batch(0)
    assert int(record["flags"]) == ev.F_AGGREGATE | ev.F_REPLY_KNOWN | ev.F_L4 | (ev.F_IPV6 if ipv6 else 0)
    assert (int(record["packets"]), int(record["bytes"])) == (49, sum(map(len, datagrams[1:])))
    assert (int(record["len_orig"]), int(record["len_cap"])) == (0, 0)
    expected = {
        "type": names.EVENT_TRACE,
        "subtype": names.TRACE_TO_LXC,
        "ifindex": LOOPBACK,
        "ep_id": EP_ID,
        "src_identity": PEER_IDENTITY,
        "dst_identity": EP_IDENTITY,
        "ethertype": 0x86DD if ipv6 else 0x0800,
        "l4_proto": IPPROTO_UDP,
        "sport": 5353,
        "dport": 53,
        "trace_reason": 2,
        "verdict": names.VERDICT_FORWARDED,
    }
    assert {name: int(record[name]) for name in expected} == expected
    assert (bytes(record["saddr"]), bytes(record["daddr"])) == (addr16(conn.peer), addr16(conn.pod))
    assert peer.conntrack.sweep(interval_ns=0) == 0  # nothing left


def test_the_sweep_reports_the_reply_direction_as_reply(peer: Datapath) -> None:
    aggregate(peer, MEDIUM)
    conn = Conversation(IPPROTO_UDP, pod_port=40000, peer_port=53)
    run(peer, OUT, conn.out(payload=b"q"))  # the pod asks (from-container: silenced)
    answers = [conn.back(payload=b"a" * i) for i in range(1, 4)]
    assert [len(run(peer, IN, a)) for a in answers] == [1, 0, 0]
    assert peer.conntrack.sweep(interval_ns=0) == 1
    [record] = peer.reader().read_batch(0)
    assert (int(record["trace_reason"]), int(record["flags"]) & ev.F_REPLY) == (REPLY, ev.F_REPLY)
    assert (int(record["packets"]), bytes(record["saddr"])) == (2, addr16(PEER4))


def test_counts_add_up_whatever_the_mix(peer: Datapath) -> None:
    """Random sizes and directions, a level change half way: every packet at a reporting point is in exactly
    one event, as a packet of its own or in a report."""
    rng = np.random.default_rng(7)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    sent = {"packets": 0, "bytes": 0}
    got = {"packets": 0, "bytes": 0}
    aggregate(peer, MEDIUM, interval_ms=1)
    for i in range(400):
        if i == 200:
            aggregate(peer, NONE)
        if i == 300:
            aggregate(peer, MEDIUM, interval_ms=1)
        packet = conn.back(ACK if i else SYN, bytes(int(rng.integers(0, 900))))
        sent["packets"] += 1
        sent["bytes"] += len(packet)
        for event in run(peer, IN, packet):
            got["packets"] += int(event["packets"])
            got["bytes"] += int(event["bytes"])
    peer.conntrack.sweep(interval_ns=0)
    for record in peer.reader().read_batch(0):
        got["packets"] += int(record["packets"])
        got["bytes"] += int(record["bytes"])
    assert got == sent


def test_untracked_packets_follow_the_point_rule(peer: Datapath) -> None:
    aggregate(peer, MEDIUM)
    arp = eth(ETH_P_ARP, arp_request(PEER4, POD4))
    assert len(run(peer, OUT, arp)) == 0
    assert column(run(peer, IN, arp), "packets") == [1]


def test_a_report_has_the_precise_time_and_the_identities_of_its_moment(peer: Datapath) -> None:
    """Conntrack keeps its times on the coarse clock, but an event carries the precise one; identities are
    looked up when an event needs them, so a report shows the ipcache as it is when it is sent."""
    aggregate(peer, MEDIUM, interval_ms=50)
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=5353)
    run(peer, IN, conn.back(payload=b"0"))
    assert len(run(peer, IN, conn.back(payload=b"1"))) == 0
    peer.replace_ipcache({f"{PEER4}/32": PEER_IDENTITY + 1, f"{POD4}/32": EP_IDENTITY})
    time.sleep(0.06)
    before = time.monotonic_ns()
    [report] = run(peer, IN, conn.back(payload=b"2"))
    after = time.monotonic_ns()
    assert before <= int(report["ts"]) <= after
    assert (int(report["src_identity"]), int(report["dst_identity"])) == (PEER_IDENTITY + 1, EP_IDENTITY)
    assert int(report["packets"]) == 2


def test_connection_times_follow_the_monotonic_clock(peer: Datapath) -> None:
    """Expiry and last report are kept on the coarse monotonic clock: at most a tick behind the precise one."""
    aggregate(peer, MEDIUM)
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=5353)
    before = time.monotonic_ns()
    run(peer, IN, conn.back(payload=b"0"))
    after = time.monotonic_ns()
    _, entries = peer.conntrack.read()
    [entry] = entries
    last_report = int(entry["dir"]["last_report"][0])  # reported at once: the first packet of its direction
    tick = 20_000_000  # generous: HZ is 100 at the least
    assert before - tick <= last_report <= after
    lifetime = 60 * 10**9  # UDP
    assert before - tick <= int(entry["expires"]) - lifetime <= after


def test_a_flush_by_the_sweep_does_not_make_the_next_packet_a_report(peer: Datapath) -> None:
    """The sweep stamps the last report with the precise clock, a packet compares with the coarse one (up to a
    tick behind): the next packet must not mistake that for an interval gone by."""
    aggregate(peer, MEDIUM)
    conn = Conversation(IPPROTO_UDP, pod_port=53, peer_port=5353)
    assert len(run(peer, IN, conn.back(payload=b"0"))) == 1
    assert len(run(peer, IN, conn.back(payload=b"1"))) == 0
    assert peer.conntrack.sweep(interval_ns=0) == 1
    assert int(peer.reader().read_batch(0)[0]["packets"]) == 1
    assert [len(run(peer, IN, conn.back(payload=b"2"))) for _ in range(3)] == [0, 0, 0]
