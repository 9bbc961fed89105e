"""Assembling hops into paths: grouping and ordering, digest links across nodes, deltas, fates, --summary."""

from __future__ import annotations

import random

import path_samples as s

from flowscope.cli.trace.fate import DELIVERED, DROPPED, FORWARDED, UNKNOWN, Fate
from flowscope.cli.trace.paths import assemble, summary


def nodes() -> tuple[s.Node, s.Node]:
    return s.Node("node1"), s.Node("node2")


def test_a_syn_crossing_two_nodes_is_one_path_linked_by_digest_and_delivered() -> None:
    node1, node2 = nodes()
    events = s.syn_crossing(node1, node2)
    random.Random(3).shuffle(events)  # relays merge nodes' streams: order comes from the clocks and indexes

    session = assemble(events)

    [path] = session.paths
    assert path.id == 1
    assert [packet.node for packet in path.packets] == ["node1", "node2"]
    hops = path.hops()
    assert [(hop.node, hop.hop.hook) for hop in hops][:2] == [("node1", "from-endpoint"), ("node1", "stage:ipv4")]
    assert [hop.hop.index for hop in hops] == [*range(9), *range(9)]
    assert [hop.delta_us for hop in hops[:9]] == [None, 0.4, 0.8, 0.8, 0.6, 6.4, 0.5, 0.5, 1.0]
    link = hops[9]
    assert (link.node, link.hop.hook, link.link, link.clock_dependent) == ("node2", "from-network", "digest", True)
    assert link.delta_us == 85.0  # wall clock: node1's net_dev_xmit to node2's from-network
    assert not any(hop.clock_dependent or hop.link for hop in hops[10:])
    assert path.fate == Fate(DELIVERED, "node2", "default/server")


def test_without_the_other_node_the_packet_is_forwarded_out_of_its_device() -> None:
    node1, node2 = nodes()
    events = [event for event in s.syn_crossing(node1, node2) if event.node_name == "node1"]

    [path] = assemble(events).paths

    assert path.fate == Fate(FORWARDED, "node1", "eth0")
    assert path.fate.text() == "forwarded out of eth0 on node1, no continuation seen"


def test_a_packet_seen_on_the_next_node_before_it_was_sent_is_not_its_continuation() -> None:
    node1, node2 = nodes()
    events = s.syn_crossing(node1, node2)
    for event in events:
        if event.node_name == "node2":
            event.hop.time.FromNanoseconds(event.hop.time.ToNanoseconds() - 1_000_000)

    session = assemble(events)

    assert [[p.node for p in path.packets] for path in session.paths] == [["node2"], ["node1"]]
    assert [path.id for path in session.paths] == [1, 2]  # numbered by their first hop's time


def test_two_syns_link_each_to_its_own_continuation() -> None:
    node1, node2 = nodes()
    events = s.syn_crossing(node1, node2, start=1_000_000, sport=1111)
    events += s.syn_crossing(node1, node2, start=1_050_000, sport=2222)

    session = assemble(events)

    assert len(session.paths) == 2
    for path, sport in zip(session.paths, (1111, 2222), strict=True):
        assert {hop.hop.l4.TCP.source_port for hop in path.hops()} == {sport}
        assert [packet.node for packet in path.packets] == ["node1", "node2"]


def test_udp_to_a_closed_port_is_dropped_by_the_kernel_with_no_socket() -> None:
    [path] = assemble(s.udp_closed_port(s.Node("node1"))).paths

    assert path.fate == Fate(DROPPED, "node1", "default/other", "NO_SOCKET", "__udp4_lib_rcv", by_kernel=True)
    assert path.fate.text() == "dropped on node1 by the kernel: NO_SOCKET in __udp4_lib_rcv"


def test_a_policy_drop_names_the_stage_the_reason_and_the_rule() -> None:
    [path] = assemble(s.policy_drop(s.Node("node1"))).paths

    assert path.fate == Fate(DROPPED, "node1", "stage:policy", "POLICY_DENIED", rule="deny-db/egress/0")
    assert path.fate.text() == "dropped on node1 at stage:policy: POLICY_DENIED (rule deny-db/egress/0)"


def test_an_nftables_drop_names_the_kernel_reason_and_function() -> None:
    [path] = assemble(s.nft_drop(s.Node("node1"))).paths

    assert path.fate == Fate(DROPPED, "node1", "node1", "NETFILTER_DROP", "nf_hook_slow", by_kernel=True)


def test_a_packet_with_no_end_seen_is_unknown() -> None:
    events = s.udp_closed_port(s.Node("node1"))[:3]

    [path] = assemble(events).paths

    assert path.fate.kind == UNKNOWN
    assert path.fate.text() == "unknown: no end seen before the session ended"


def test_a_packet_the_stack_took_in_without_a_traced_free_is_delivered() -> None:
    """An established connection's segment ends at netif_receive_skb in the server's namespace: TCP frees what
    it processed with __kfree_skb, which fires no tracepoint, while a drop there would have fired kfree_skb."""
    events = [e for e in s.syn_crossing(s.Node("node1"), s.Node("node2")) if e.hop.hook != "skb:consume_skb"]

    [path] = assemble(events).paths

    assert path.fate == Fate(DELIVERED, "node2", "default/server", freed_unseen=True)
    assert path.fate.final
    assert path.fate.text() == "delivered to default/server on node2 (its stack took it; the free has no tracepoint)"


def test_a_consume_before_arrival_is_no_delivery() -> None:
    """A consumed copy (the packet was sent on from the node) says nothing about where it went."""
    node1 = s.Node("node1")
    packet = s.udp(s.CLIENT, 1, s.SERVER, 2)
    events = [
        node1.hop("p", 1_000, s.E, "from-endpoint", interface="lxc1", **packet),
        node1.hop("p", 2_000, s.P, "to-network", interface="eth0", **packet),
        node1.hop("p", 3_000, s.K, "skb:consume_skb", netns_name="node1", function="napi_consume_skb", **packet),
    ]

    [path] = assemble(events).paths

    assert path.fate == Fate(FORWARDED, "node1", "eth0")


def test_summary_groups_paths_by_steps_and_fate_most_common_first() -> None:
    node1, node2 = nodes()
    events = s.policy_drop(node1, start=100)
    events += s.syn_crossing(node1, node2, start=1_000_000, sport=1111)
    events += s.syn_crossing(node1, node2, start=2_000_000, sport=2222)
    events += [node1.started(), node1.ended(3, 20, lost=2), node2.ended(2, 18)]

    session = assemble(events)
    groups = summary(session)

    assert [(group.count, group.fate, group.path_ids) for group in groups] == [
        (2, "delivered: node2 default/server", (2, 3)),
        (1, "dropped: POLICY_DENIED", (1,)),
    ]
    assert groups[1].steps == (
        ("node1", "from-endpoint"),
        ("node1", "stage:ct"),
        ("node1", "stage:policy"),
        ("node1", "skb:kfree_skb"),
    )
    assert session.lost() == {"node1": 2}
    assert set(session.started) == {"node1"}


def _pieces(events: list, sent: tuple[int, int], arrived: tuple[int, int]) -> list:
    """The SYN sample as if the wire had cut or merged it: node2 saw other bytes (another digest) of the same
    connection, carrying the TCP byte range `arrived` where node1 sent `sent` (seq, payload length)."""
    for event in events:
        if event.WhichOneof("event") != "hop" or not event.hop.digest:
            continue
        seq, length = sent if event.node_name == "node1" else arrived
        event.hop.flow_digest = "c0ffee"
        event.hop.tcp_seq, event.hop.payload_length = seq, length
        if event.node_name == "node2":
            event.hop.digest = "0ther"
    return events


def test_pieces_of_one_segment_are_linked_by_their_overlapping_sequence_range() -> None:
    node1, node2 = nodes()
    events = _pieces(s.syn_crossing(node1, node2), sent=(2**32 - 1000, 4344), arrived=(1448 - 1000, 1448))

    [path] = assemble(events).paths

    assert [packet.node for packet in path.packets] == ["node1", "node2"]
    assert [hop.link for hop in path.hops() if hop.link] == ["sequence range"]


def test_pieces_of_other_byte_ranges_are_not_linked() -> None:
    node1, node2 = nodes()
    events = _pieces(s.syn_crossing(node1, node2), sent=(1000, 1448), arrived=(2448, 1448))

    assert len(assemble(events).paths) == 2
