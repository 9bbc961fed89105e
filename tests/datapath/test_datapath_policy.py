"""The policy stage on crafted packets (BPF_PROG_TEST_RUN), with policy maps written by hand: verdict events
on a connection's first packet, drops with Cilium's reasons, replies, revisions, and the query program."""

from __future__ import annotations

import pytest
from dp_flows import IN, NEW, OUT, PEER4, POD4, Conversation, aggregate, column, echo, run
from dp_packets import (
    ACK,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SYN,
    eth,
    icmp,
    ipv4,
    ipv6,
    udp,
)
from dp_run import EP_IDENTITY

from flowscope.common import names
from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.policymaps import EGRESS, INGRESS, PolicyKey, PolicyValue
from flowscope.observer.datapath.testrun import TC_ACT_SHOT

pytestmark = pytest.mark.bpf

FRIEND, STRANGER = 7001, 7002
FRIEND4, STRANGER4 = PEER4, "203.0.113.9"
POLICY_DENIED, POLICY_DENY, FRAG_NOSUPPORT = names.DROP_POLICY_DENIED, names.DROP_POLICY_DENY, names.DROP_FRAG_NOSUPPORT
L3_L4, L4_ONLY, L3_ONLY, NO_MATCH = 2, 3, 1, 0


def install(dp: Datapath, rev: int, entries: dict[PolicyKey, PolicyValue], enforced: dict[int, int]) -> None:
    """A policy as the agent installs one: the new generation first, then the revision that selects it."""
    dp.policy.write_generation(rev & 1, entries, enforced)
    aggregate(dp, 0, policy_rev=rev)
    dp.policy.clear_generation((rev & 1) ^ 1)


@pytest.fixture
def peers(dp: Datapath) -> Datapath:
    dp.replace_ipcache({f"{FRIEND4}/32": FRIEND, f"{STRANGER4}/32": STRANGER, f"{POD4}/32": EP_IDENTITY})
    return dp


def ingress_from_friend(dp: Datapath, rev: int = 1, port: int = 80) -> None:
    key = PolicyKey(EP_IDENTITY, INGRESS, FRIEND, IPPROTO_TCP, port)
    install(dp, rev, {key: PolicyValue(rule=11)}, {EP_IDENTITY: INGRESS})


def verdict_of(event: object) -> tuple[int, int, int, int, int]:
    """(type, verdict, drop_reason, direction, match type) of an event."""
    flags = int(event["policy_flags"])  # type: ignore[index]
    return (
        int(event["type"]),  # type: ignore[index]
        int(event["verdict"]),  # type: ignore[index]
        int(event["drop_reason"]),  # type: ignore[index]
        flags & 3,
        flags >> 3 & 7,
    )


def test_allowed_connection_sends_a_verdict_then_its_trace(peers: Datapath) -> None:
    ingress_from_friend(peers)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    first = run(peers, IN, conn.back(SYN))
    assert [int(t) for t in first["type"]] == [names.EVENT_POLICY_VERDICT, names.EVENT_TRACE]
    assert verdict_of(first[0]) == (names.EVENT_POLICY_VERDICT, names.VERDICT_FORWARDED, 0, INGRESS, L3_L4)
    assert int(first[0]["rule"]) == 11
    assert int(first[1]["trace_reason"]) == NEW
    assert column(run(peers, IN, conn.back(ACK)), "type") == [names.EVENT_TRACE]  # judged once
    assert column(run(peers, OUT, conn.out(SYN | ACK)), "type") == [names.EVENT_TRACE]  # the reply passes


def test_denied_connection_sends_a_verdict_and_drops_every_packet(peers: Datapath) -> None:
    ingress_from_friend(peers)
    stranger = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    packet = eth(ETH_P_IP, ipv4(STRANGER4, POD4, IPPROTO_TCP, stranger.back(SYN)[34:]))
    first = run(peers, IN, packet, verdict=TC_ACT_SHOT)
    assert [verdict_of(e) for e in first] == [
        (names.EVENT_POLICY_VERDICT, names.VERDICT_DROPPED, POLICY_DENIED, INGRESS, NO_MATCH),
        (names.EVENT_DROP, names.VERDICT_DROPPED, POLICY_DENIED, 0, 0),
    ]
    again = run(peers, IN, packet, verdict=TC_ACT_SHOT)
    assert [verdict_of(e) for e in again] == [(names.EVENT_DROP, names.VERDICT_DROPPED, POLICY_DENIED, 0, 0)]
    assert int(again[0]["subtype"]) == POLICY_DENIED


def test_wrong_port_is_denied(peers: Datapath) -> None:
    ingress_from_friend(peers, port=443)
    events = run(peers, IN, Conversation(IPPROTO_TCP, pod_port=80).back(SYN), verdict=TC_ACT_SHOT)
    assert column(events, "drop_reason") == [POLICY_DENIED, POLICY_DENIED]


def test_an_explicit_deny_is_policy_deny(peers: Datapath) -> None:
    install(peers, 1, {PolicyKey(EP_IDENTITY, EGRESS, FRIEND): PolicyValue(rule=3, deny=True)}, {EP_IDENTITY: EGRESS})
    events = run(peers, OUT, Conversation(IPPROTO_UDP).out(payload=b"x"), verdict=TC_ACT_SHOT)
    assert [verdict_of(e) for e in events] == [
        (names.EVENT_POLICY_VERDICT, names.VERDICT_DROPPED, POLICY_DENY, EGRESS, L3_ONLY),
        (names.EVENT_DROP, names.VERDICT_DROPPED, POLICY_DENY, 0, 0),
    ]


def test_keys_are_tried_from_the_most_specific(peers: Datapath) -> None:
    install(
        peers,
        1,
        {
            PolicyKey(EP_IDENTITY, INGRESS, 0, IPPROTO_TCP, 80): PolicyValue(rule=1),  # anyone to 80
            PolicyKey(EP_IDENTITY, INGRESS, FRIEND): PolicyValue(rule=2),  # the friend to anything
        },
        {EP_IDENTITY: INGRESS},
    )
    to_80 = run(peers, IN, Conversation(IPPROTO_TCP, pod_port=80).back(SYN))
    to_81 = run(peers, IN, Conversation(IPPROTO_TCP, pod_port=81).back(SYN))
    assert (verdict_of(to_80[0])[4], int(to_80[0]["rule"])) == (L4_ONLY, 1)
    assert (verdict_of(to_81[0])[4], int(to_81[0]["rule"])) == (L3_ONLY, 2)


def test_an_endpoint_without_policy_in_a_direction_sends_no_verdicts(peers: Datapath) -> None:
    ingress_from_friend(peers)  # ingress only: egress is open
    assert column(run(peers, OUT, Conversation(IPPROTO_UDP).out(payload=b"x")), "type") == [names.EVENT_TRACE]


def test_a_new_revision_rejudges_live_connections(peers: Datapath) -> None:
    ingress_from_friend(peers, rev=1)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    run(peers, IN, conn.back(SYN))
    ingress_from_friend(peers, rev=2)  # the same policy again: still allowed, nothing said
    assert column(run(peers, IN, conn.back(ACK)), "type") == [names.EVENT_TRACE]
    install(peers, 3, {}, {EP_IDENTITY: INGRESS})  # nothing allowed any more: cut, from either end
    cut = run(peers, OUT, conn.out(ACK), verdict=TC_ACT_SHOT)
    assert [verdict_of(e)[:3] for e in cut] == [
        (names.EVENT_POLICY_VERDICT, names.VERDICT_DROPPED, POLICY_DENIED),
        (names.EVENT_DROP, names.VERDICT_DROPPED, POLICY_DENIED),
    ]
    assert verdict_of(cut[0])[3] == INGRESS  # judged as the connection it is: the friend opened it
    ingress_from_friend(peers, rev=4)  # allowed again: said once, then it flows
    back = run(peers, IN, conn.back(ACK))
    assert [verdict_of(e)[:2] for e in back] == [
        (names.EVENT_POLICY_VERDICT, names.VERDICT_FORWARDED),
        (names.EVENT_TRACE, names.VERDICT_FORWARDED),
    ]


def test_policy_and_aggregation_together(peers: Datapath) -> None:
    """Verdicts and drops are never aggregated; the allowed packets still add up."""
    ingress_from_friend(peers)
    aggregate(peers, 3, policy_rev=1)
    conn = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    first = run(peers, IN, conn.back(SYN))
    assert column(first, "type") == [names.EVENT_POLICY_VERDICT, names.EVENT_TRACE]
    assert int(first[1]["flags"]) & ev.F_AGGREGATE
    denied = Conversation(IPPROTO_TCP, pod_port=22, peer_port=40000)
    for _ in range(3):
        assert names.EVENT_DROP in column(run(peers, IN, denied.back(SYN), verdict=TC_ACT_SHOT), "type")


def test_later_fragments_are_dropped_where_a_policy_enforces(peers: Datapath) -> None:
    ingress_from_friend(peers)
    fragment = eth(ETH_P_IP, ipv4(FRIEND4, POD4, IPPROTO_UDP, udp(1, 2), frag_offset=10))
    [drop] = run(peers, IN, fragment, verdict=TC_ACT_SHOT)
    assert (int(drop["type"]), int(drop["drop_reason"])) == (names.EVENT_DROP, FRAG_NOSUPPORT)
    outbound = eth(ETH_P_IP, ipv4(POD4, FRIEND4, IPPROTO_UDP, udp(1, 2), frag_offset=10))
    assert column(run(peers, OUT, outbound), "type") == [names.EVENT_TRACE]  # egress is not enforced


def test_neighbour_discovery_is_never_judged(peers: Datapath) -> None:
    install(peers, 1, {}, {EP_IDENTITY: INGRESS | EGRESS})
    solicit = eth(ETH_P_IPV6, ipv6("fe80::1", "ff02::1:ff00:10", IPPROTO_ICMPV6, icmp(135, 0, bytes(20))))
    assert column(run(peers, IN, solicit), "type") == [names.EVENT_TRACE]
    run(peers, IN, echo(FRIEND4, POD4, 8, ident=1), verdict=TC_ACT_SHOT)  # but ping is judged


def test_query_answers_as_the_datapath_decides(peers: Datapath) -> None:
    ingress_from_friend(peers, rev=1)
    answer = peers.policy.query(FRIEND4, POD4, IPPROTO_TCP, 80)
    assert (answer.source_identity, answer.destination_identity) == (FRIEND, EP_IDENTITY)
    assert not answer.egress.enforced and answer.egress.allowed
    assert answer.ingress.enforced and answer.ingress.allowed
    assert (answer.ingress.rule, answer.ingress.match_name) == (11, "L3-L4")
    denied = peers.policy.query(STRANGER4, POD4, IPPROTO_TCP, 80)
    assert (denied.ingress.allowed, denied.ingress.drop_reason) == (False, POLICY_DENIED)
    outside = peers.policy.query("2001:db8::1", "2001:db8::2", IPPROTO_TCP, 80)
    assert outside.source_identity == outside.destination_identity == 2  # world, nothing enforced
    assert outside.ingress.allowed and not outside.ingress.enforced
