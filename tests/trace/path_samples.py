"""Hand-built trace sessions, hop by hop, as two lab nodes report them: the four paths the path tests and the
rendering tests look at (a SYN from node1 delivered on node2, UDP to a closed port, a policy drop, an
nftables drop). Plain data for pure functions: the lead's end-to-end tests send the real packets."""

from __future__ import annotations

from typing import Any

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2

EPOCH_NS = 1_700_000_000 * 1_000_000_000  # wall clock of ktime 0 on both nodes in these samples

CLIENT, SERVER = "10.200.1.11", "10.200.2.12"


def tcp(source: str, sport: int, destination: str, dport: int, **flags: bool) -> dict[str, Any]:
    return {
        "IP": flow_pb2.IP(source=source, destination=destination, ipVersion=flow_pb2.IPv4),
        "l4": flow_pb2.Layer4(
            TCP=flow_pb2.TCP(source_port=sport, destination_port=dport, flags=flow_pb2.TCPFlags(**flags))
        ),
    }


def udp(source: str, sport: int, destination: str, dport: int) -> dict[str, Any]:
    return {
        "IP": flow_pb2.IP(source=source, destination=destination, ipVersion=flow_pb2.IPv4),
        "l4": flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=sport, destination_port=dport)),
    }


class Node:
    """Makes one node's events: `hop()` numbers each packet's hops and stamps both clocks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.indexes: dict[str, int] = {}

    def event(self, ktime_ns: int, **what: Any) -> trace_pb2.TraceEvent:
        event = trace_pb2.TraceEvent(node_name=self.name, **what)
        event.time.FromNanoseconds(EPOCH_NS + ktime_ns)
        return event

    def started(self, kernel_hooks: bool = True, notes: tuple[str, ...] = ()) -> trace_pb2.TraceEvent:
        started = trace_pb2.SessionStarted(
            session_id=7, filter="tcp or udp", count=10, kernel_hooks=kernel_hooks, notes=notes
        )
        started.duration.FromSeconds(30)
        return self.event(0, started=started)

    def ended(self, packets: int, hops: int, lost: int = 0) -> trace_pb2.TraceEvent:
        ended = trace_pb2.SessionEnded(
            session_id=7, reason=trace_pb2.SessionEnded.COUNT, packets=packets, hops=hops, hops_lost=lost
        )
        return self.event(10**12, ended=ended)

    def hop(self, packet_id: str, ktime_ns: int, kind: int, hook: str, **fields: Any) -> trace_pb2.TraceEvent:
        index = self.indexes.get(packet_id, 0)
        self.indexes[packet_id] = index + 1
        hop = trace_pb2.Hop(session_id=7, packet_id=packet_id, index=index, ktime_ns=ktime_ns, kind=kind, hook=hook)
        for name, value in fields.items():
            if isinstance(value, flow_pb2.IP | flow_pb2.Layer4 | trace_pb2.Conntrack | trace_pb2.PolicyDecision):
                getattr(hop, name).CopyFrom(value)
            else:
                setattr(hop, name, value)
        hop.time.FromNanoseconds(EPOCH_NS + ktime_ns)
        return self.event(ktime_ns, hop=hop)


E, S, P, D, K = trace_pb2.TC_ENTRY, trace_pb2.TC_STAGE, trace_pb2.TC_PASS, trace_pb2.TC_DROP, trace_pb2.KERNEL
NEW = trace_pb2.Conntrack(tracked=True, state=flow_pb2.NEW, policy="judge")
SYN_DIGEST = "5e1c0ffee0ddba11"


def syn_crossing(node1: Node, node2: Node, start: int = 1_000_000, sport: int = 43512) -> list[trace_pb2.TraceEvent]:
    """A TCP SYN from default/client on node1 to default/server on node2, through the two nodes' eth0."""
    syn = tcp(CLIENT, sport, SERVER, 9000, SYN=True)
    digest = f"{SYN_DIGEST}{sport:x}"
    a, b = f"{start:x}-a", f"{start:x}-b"
    allowed = trace_pb2.PolicyDecision(
        verdict=flow_pb2.FORWARDED, rule="web/egress/0", match_type="l3-l4", enforced=True
    )
    out = [
        node1.hop(a, start, E, "from-endpoint", interface="lxc1", ifindex=5, digest=digest, **syn),
        node1.hop(a, start + 400, S, "stage:ipv4", **syn),
        node1.hop(a, start + 1_200, S, "stage:ct", conntrack=NEW, **syn),
        node1.hop(a, start + 2_000, S, "stage:policy", policy=allowed, **syn),
        node1.hop(
            a,
            start + 2_600,
            P,
            "from-endpoint",
            interface="lxc1",
            aggregation="reported",
            verdict=flow_pb2.FORWARDED,
            **syn,
        ),
        node1.hop(a, start + 9_000, K, "net:net_dev_queue", netns_name="node1", interface="eth0", **syn),
        node1.hop(a, start + 9_500, E, "to-network", interface="eth0", digest=digest, **syn),
        node1.hop(a, start + 10_000, P, "to-network", interface="eth0", verdict=flow_pb2.FORWARDED, **syn),
        node1.hop(a, start + 11_000, K, "net:net_dev_xmit", netns_name="node1", interface="eth0", digest=digest, **syn),
        # node2 picks it as it comes in from the network, 85 µs later by the wall clocks
        node2.hop(b, start + 96_000, E, "from-network", interface="eth0", digest=digest, **syn),
        node2.hop(b, start + 96_500, S, "stage:ipv4", **syn),
        node2.hop(b, start + 97_000, P, "from-network", interface="eth0", verdict=flow_pb2.FORWARDED, **syn),
        node2.hop(b, start + 120_000, E, "to-endpoint", interface="lxc2", **syn),
        node2.hop(b, start + 121_000, S, "stage:ct", conntrack=NEW, **syn),
        node2.hop(b, start + 122_000, P, "to-endpoint", interface="lxc2", verdict=flow_pb2.FORWARDED, **syn),
        node2.hop(b, start + 125_000, K, "net:net_dev_xmit", netns_name="node2", interface="lxc2", **syn),
        node2.hop(b, start + 140_000, K, "net:netif_receive_skb", netns_name="default/server", interface="eth0", **syn),
        node2.hop(b, start + 190_000, K, "skb:consume_skb", netns_name="default/server", function="tcp_v4_rcv", **syn),
    ]
    return out


def udp_closed_port(node1: Node, start: int = 5_000_000) -> list[trace_pb2.TraceEvent]:
    """UDP from default/client to a port nothing listens on in default/other, on the same node: the kernel
    drops it in the receiving namespace."""
    packet = udp(CLIENT, 50000, "10.200.1.13", 7)
    a = f"{start:x}-u"
    return [
        node1.hop(a, start, E, "from-endpoint", interface="lxc1", **packet),
        node1.hop(a, start + 700, P, "from-endpoint", interface="lxc1", verdict=flow_pb2.FORWARDED, **packet),
        node1.hop(a, start + 4_000, E, "to-endpoint", interface="lxc3", **packet),
        node1.hop(a, start + 4_600, P, "to-endpoint", interface="lxc3", verdict=flow_pb2.FORWARDED, **packet),
        node1.hop(a, start + 6_000, K, "net:netif_receive_skb", netns_name="default/other", interface="eth0", **packet),
        node1.hop(
            a,
            start + 9_000,
            K,
            "skb:kfree_skb",
            netns_name="default/other",
            drop_reason_desc="NO_SOCKET",
            function="__udp4_lib_rcv",
            **packet,
        ),
    ]


def policy_drop(node1: Node, start: int = 7_000_000) -> list[trace_pb2.TraceEvent]:
    """A SYN from default/client to the database port, denied by rule deny-db/egress/0 at the policy stage."""
    syn = tcp(CLIENT, 40000, "10.200.1.14", 5432, SYN=True)
    denied = trace_pb2.PolicyDecision(
        verdict=flow_pb2.DROPPED, rule="deny-db/egress/0", match_type="l3-l4", enforced=True
    )
    a = f"{start:x}-p"
    return [
        node1.hop(a, start, E, "from-endpoint", interface="lxc1", **syn),
        node1.hop(a, start + 500, S, "stage:ct", conntrack=NEW, **syn),
        node1.hop(a, start + 1_500, S, "stage:policy", policy=denied, **syn),
        node1.hop(
            a,
            start + 1_800,
            D,
            "stage:policy",
            interface="lxc1",
            tc_action=2,
            verdict=flow_pb2.DROPPED,
            drop_reason=flow_pb2.POLICY_DENIED,
            **syn,
        ),
        node1.hop(
            a,
            start + 2_500,
            K,
            "skb:kfree_skb",
            netns_name="node1",
            drop_reason_desc="TC_INGRESS",
            function="tcx_run",
            **syn,
        ),
    ]


def nft_drop(node1: Node, start: int = 9_000_000) -> list[trace_pb2.TraceEvent]:
    """UDP from default/client to the world, dropped by an nftables forward rule on node1."""
    packet = udp(CLIENT, 50001, "192.0.2.1", 53)
    a = f"{start:x}-n"
    return [
        node1.hop(a, start, E, "from-endpoint", interface="lxc1", **packet),
        node1.hop(a, start + 600, P, "from-endpoint", interface="lxc1", verdict=flow_pb2.FORWARDED, **packet),
        node1.hop(a, start + 3_000, K, "net:netif_receive_skb", netns_name="node1", interface="lxc1", **packet),
        node1.hop(
            a,
            start + 8_000,
            K,
            "skb:kfree_skb",
            netns_name="node1",
            drop_reason_desc="NETFILTER_DROP",
            function="nf_hook_slow",
            **packet,
        ),
    ]
