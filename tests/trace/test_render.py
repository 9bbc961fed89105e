"""What `flowscope trace` prints: the tree per path (exact text), -o json and jsonpb lines, --summary, lost hops,
and when each path is printed as events stream in."""

from __future__ import annotations

import json

import path_samples as s
from rich.console import Console

from flowscope.api.trace import trace_pb2
from flowscope.cli.trace.render import Renderer


def console() -> Console:
    return Console(width=120, color_system=None, record=True)


def text(out: Console) -> list[str]:
    return [line.rstrip() for line in out.export_text(clear=False).splitlines()]


def run(events: list[trace_pb2.TraceEvent], output: str = "tree", summary: bool = False) -> list[str]:
    out = console()
    renderer = Renderer(out, output, summary)
    for event in events:
        renderer.event(event)
    renderer.finish()
    return text(out)


SYN_TREE = """\
packet 1  10.200.1.11:43512 → 10.200.2.12:9000 TCP SYN
├── node1
│   ├──              tc entry from-endpoint   lxc1
│   ├──      +0.4µs  stage:ipv4
│   ├──      +0.8µs  stage:ct                                        ct NEW, policy judge
│   ├──      +0.8µs  stage:policy                                    policy ALLOWED by web/egress/0 l3-l4
│   ├──      +0.6µs  tc pass from-endpoint    lxc1                   flow reported FORWARDED
│   ├──      +6.4µs  net:net_dev_queue        node1 eth0
│   ├──      +0.5µs  tc entry to-network      eth0
│   ├──      +0.5µs  tc pass to-network       eth0                   FORWARDED
│   └──      +1.0µs  net:net_dev_xmit         node1 eth0             rc 0
├── node2  ↳ linked by digest 5e1c0ffee0ddba11a9f8 (inferred)
│   ├──    ~+85.0µs  tc entry from-network    eth0
│   ├──      +0.5µs  stage:ipv4
│   ├──      +0.5µs  tc pass from-network     eth0                   FORWARDED
│   ├──     +23.0µs  tc entry to-endpoint     lxc2
│   ├──      +1.0µs  stage:ct                                        ct NEW, policy judge
│   ├──      +1.0µs  tc pass to-endpoint      lxc2                   FORWARDED
│   ├──      +3.0µs  net:net_dev_xmit         node2 lxc2             rc 0
│   ├──     +15.0µs  net:netif_receive_skb    default/server eth0
│   └──     +50.0µs  skb:consume_skb          default/server         in tcp_v4_rcv
└── delivered to default/server on node2"""


def test_the_tree_of_a_syn_crossing_two_nodes() -> None:
    node1, node2 = s.Node("node1"), s.Node("node2")

    lines = run([node1.started(), node2.started(), *s.syn_crossing(node1, node2)])

    assert lines[:2] == [
        "node1: session 7 tracing tcp or udp (10 packets, 30s)",
        "node2: session 7 tracing tcp or udp (10 packets, 30s)",
    ]
    assert lines[2:] == SYN_TREE.splitlines()


def test_the_tree_of_a_policy_drop() -> None:
    assert run(s.policy_drop(s.Node("node1"))) == [
        "packet 1  10.200.1.11:40000 → 10.200.1.14:5432 TCP SYN",
        "├── node1",
        "│   ├──              tc entry from-endpoint   lxc1",
        "│   ├──      +0.5µs  stage:ct                                        ct NEW, policy judge",
        "│   ├──      +1.0µs  stage:policy                                    policy DENIED by deny-db/egress/0 l3-l4",
        "│   ├──      +0.3µs  tc drop stage:policy     lxc1                   POLICY_DENIED DROPPED",
        "│   └──      +0.7µs  skb:kfree_skb            node1                  reason TC_INGRESS; in tcx_run",
        "└── dropped on node1 at stage:policy: POLICY_DENIED (rule deny-db/egress/0)",
    ]


def test_the_trees_of_kernel_drops_end_with_the_reason_and_function() -> None:
    node1 = s.Node("node1")

    lines = run(s.udp_closed_port(node1) + s.nft_drop(node1))

    assert lines[0] == "packet 1  10.200.1.11:50000 → 10.200.1.13:7 UDP"
    assert lines[7:9] == [
        "│   └──      +3.0µs  skb:kfree_skb            default/other          reason NO_SOCKET; in __udp4_lib_rcv",
        "└── dropped on node1 by the kernel: NO_SOCKET in __udp4_lib_rcv",
    ]
    assert lines[9] == "packet 2  10.200.1.11:50001 → 192.0.2.1:53 UDP"
    assert lines[-1] == "└── dropped on node1 by the kernel: NETFILTER_DROP in nf_hook_slow"


def test_a_path_prints_as_soon_as_its_packet_ends_and_one_from_the_network_waits_for_the_end() -> None:
    node1, node2 = s.Node("node1"), s.Node("node2")
    out = console()
    renderer = Renderer(out)
    drop = s.policy_drop(node1)
    for event in drop[:-1]:
        renderer.event(event)
    assert text(out) == []  # the TC_DROP is in, the kernel's kfree_skb of it is still to come
    renderer.event(drop[-1])
    assert text(out)[-1] == "└── dropped on node1 at stage:policy: POLICY_DENIED (rule deny-db/egress/0)"

    arriving = [event for event in s.syn_crossing(node1, node2) if event.node_name == "node2"]
    for event in arriving:
        renderer.event(event)
    assert len(text(out)) == 8  # delivered, but its sender on node1 may still be reported
    session = renderer.finish()
    assert [(path.packets[0].node, path.id) for path in session.paths] == [("node1", 1), ("node2", 2)]
    assert text(out)[8] == "packet 2  10.200.1.11:43512 → 10.200.2.12:9000 TCP SYN"
    assert text(out)[-1] == "└── delivered to default/server on node2"


def test_lost_hops_are_said_in_bold_at_the_end() -> None:
    node1, node2 = s.Node("node1"), s.Node("node2")

    lines = run([*s.nft_drop(node1), node1.ended(1, 4, lost=3), node2.ended(0, 0, lost=1)])

    assert lines[-2:] == [
        "3 hops were lost on node1: its buffers were full, so its paths may miss hops",
        "1 hop was lost on node2: its buffers were full, so its paths may miss hops",
    ]


def test_json_is_one_flat_object_per_hop_with_the_fate_on_the_last() -> None:
    lines = run(s.policy_drop(s.Node("node1")), output="json")

    records = [json.loads(line) for line in lines]
    assert [(r["path"], r["node"], r["hook"], r["delta_us"]) for r in records] == [
        (1, "node1", "from-endpoint", None),
        (1, "node1", "stage:ct", 0.5),
        (1, "node1", "stage:policy", 1.0),
        (1, "node1", "stage:policy", 0.3),
        (1, "node1", "skb:kfree_skb", 0.7),
    ]
    assert records[0]["packet_id"] == "6acfc0-p"
    assert records[0]["IP_source"] == "10.200.1.11"
    assert records[0]["l4_TCP_destination_port"] == 5432
    assert records[2]["policy_rule"] == "deny-db/egress/0"
    assert records[3]["drop_reason"] == "POLICY_DENIED"
    assert "fate" not in records[3]
    assert records[4]["fate"] == "dropped"
    assert records[4]["fate_text"] == "dropped on node1 at stage:policy: POLICY_DENIED (rule deny-db/egress/0)"


def test_json_marks_the_link_across_nodes() -> None:
    node1, node2 = s.Node("node1"), s.Node("node2")

    records = [json.loads(line) for line in run(s.syn_crossing(node1, node2), output="json")]

    linked = records[9]
    assert (linked["node"], linked["link"], linked["clock_dependent"], linked["delta_us"]) == (
        "node2",
        "digest",
        True,
        85.0,
    )
    assert {record["path"] for record in records} == {1}


def test_jsonpb_prints_each_event_as_it_arrives() -> None:
    node1 = s.Node("node1")
    out = console()
    renderer = Renderer(out, "jsonpb")
    events = [node1.started(), *s.nft_drop(node1)[:2]]
    for event in events:
        renderer.event(event)

    lines = text(out)
    assert len(lines) == 3
    assert json.loads(lines[0])["started"]["filter"] == "tcp or udp"
    assert json.loads(lines[1])["hop"]["hook"] == "from-endpoint"
    assert json.loads(lines[2])["node_name"] == "node1"


def test_summary_is_a_table_of_path_groups() -> None:
    node1 = s.Node("node1")
    events = s.policy_drop(node1, start=100) + s.nft_drop(node1)
    events += s.policy_drop(node1, start=200_000)

    assert run(events, summary=True) == [
        "COUNT  PATH                                                           FATE",
        "    2  node1:from-endpoint → stage:ct → stage:policy → skb:kfree_skb  dropped: POLICY_DENIED",
        "    1  node1:from-endpoint → net:netif_receive_skb → skb:kfree_skb    dropped: NETFILTER_DROP",
    ]
