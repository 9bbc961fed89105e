"""What became of a traced packet on one node, read from its last hops (docs/reference/packet-path.md, lesson 4).

The rules, in the order they are tried, so that the strongest evidence wins:

- a TC_DROP hop: the datapath dropped it, at that hook or at the stage that decided (stage:policy, ...);
- skb:kfree_skb: the kernel dropped it, with its reason (NO_SOCKET, NETFILTER_DROP) and the freeing function;
- skb:consume_skb after the packet arrived somewhere (a to-endpoint hop, net:netif_receive_skb) and was not
  sent on from there: delivered into that namespace (a consumed copy that never arrived proves nothing);
- a last hop that transmits (net:net_dev_xmit, a to-network/to-overlay pass): forwarded out of that device;
- a last hop that is net:netif_receive_skb, with the session over after the node was quiet: delivered into that
  namespace's stack, said as seen without a free. The kernel frees what its stack took in without a tracepoint
  as often as with one (TCP's processed segments and UDP's read datagrams go through __kfree_skb and
  __consume_stateless_skb, which have none), while the drops it could still make there (no socket, a bad
  checksum, a full queue) fire skb:kfree_skb at once; so an established connection's segments end here;
- anything else: unknown, no end was seen before the session ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2

DROPPED, DELIVERED, FORWARDED, UNKNOWN = "dropped", "delivered", "forwarded", "unknown"

TRANSMIT_POINTS = frozenset({"to-network", "to-overlay"})
ARRIVAL_POINTS = frozenset({"from-network", "from-overlay"})
XMIT, RECEIVE = "net:net_dev_xmit", "net:netif_receive_skb"
KFREE, CONSUME = "skb:kfree_skb", "skb:consume_skb"


@dataclass(frozen=True)
class Fate:
    kind: str  # DROPPED, DELIVERED, FORWARDED or UNKNOWN
    node: str = ""
    where: str = ""  # dropped: the hook or stage; delivered: the namespace; forwarded: the device
    reason: str = ""  # dropped: Cilium's drop reason name, or the kernel's reason
    function: str = ""  # dropped by the kernel: the function that freed it
    rule: str = ""  # dropped by policy: the rule that decided, when one did
    by_kernel: bool = False
    freed_unseen: bool = False  # delivered: taken in by the stack, whose free has no tracepoint

    @property
    def final(self) -> bool:
        """Whether nothing more can happen to the packet: a drop or a delivery ends it for good."""
        return self.kind in (DROPPED, DELIVERED)

    def text(self) -> str:
        """One line, as a person reads it: `dropped on node1 at stage:policy: POLICY_DENIED (rule ...)`."""
        if self.kind == DROPPED:
            by = "by the kernel" if self.by_kernel else f"at {self.where}"
            line = f"dropped on {self.node} {by}: {self.reason or 'no reason given'}"
            if self.function:
                line += f" in {self.function}"
            if self.rule:
                line += f" (rule {self.rule})"
            return line
        if self.kind == DELIVERED:
            line = f"delivered to {self.where} on {self.node}"
            return line + " (its stack took it; the free has no tracepoint)" if self.freed_unseen else line
        if self.kind == FORWARDED:
            return f"forwarded out of {self.where} on {self.node}, no continuation seen"
        return "unknown: no end seen before the session ended"

    def short(self) -> str:
        """The fate in a summary table's column: `dropped: POLICY_DENIED`, `delivered: default/server`."""
        if self.kind == DROPPED:
            return f"dropped: {self.reason or self.where}"
        if self.kind in (DELIVERED, FORWARDED):
            return f"{self.kind}: {self.node} {self.where}".rstrip()
        return UNKNOWN


def is_transmit(hop: trace_pb2.Hop) -> bool:
    """The packet goes out on a device here: the end of its path on this node unless something follows."""
    if hop.kind == trace_pb2.KERNEL:
        return hop.hook == XMIT
    return hop.kind == trace_pb2.TC_PASS and hop.hook in TRANSMIT_POINTS


def is_arrival(hop: trace_pb2.Hop) -> bool:
    """The packet reached a namespace that may consume it: an endpoint's, or the node's own stack."""
    if hop.kind == trace_pb2.KERNEL:
        return hop.hook == RECEIVE
    return hop.hook == "to-endpoint"


def where(hop: trace_pb2.Hop) -> str:
    """A hop's namespace and device: `default/server lxc12`, `node1 eth0`, `netns 4026532301`."""
    place = hop.netns_name or (f"netns {hop.netns}" if hop.netns else "")
    device = hop.interface or (f"if{hop.ifindex}" if hop.ifindex else "")
    return " ".join(part for part in (place, device) if part)


def packet_fate(node: str, hops: Sequence[trace_pb2.Hop]) -> Fate:
    """The fate of one packet on `node`, from its hops in order."""
    stage = ""
    for hop in hops:
        if hop.kind == trace_pb2.TC_STAGE:
            stage = hop.hook
        if hop.kind == trace_pb2.TC_DROP:
            return Fate(
                DROPPED,
                node,
                hop.hook if hop.hook.startswith("stage:") else stage or hop.hook,
                drop_reason_name(hop.drop_reason),
                rule=_rule(hops, hop),
            )
        if hop.kind == trace_pb2.KERNEL and hop.hook == KFREE:
            return Fate(DROPPED, node, where(hop), hop.drop_reason_desc, hop.function, by_kernel=True)
    arrived: trace_pb2.Hop | None = None
    for hop in hops:
        if is_arrival(hop):
            arrived = hop
        elif is_transmit(hop):
            arrived = None  # sent on from where it arrived: a later consume is the driver's, or a copy's
        elif hop.kind == trace_pb2.KERNEL and hop.hook == CONSUME and arrived is not None:
            return Fate(DELIVERED, node, hop.netns_name or arrived.netns_name or where(hop))
    last = [hop for hop in hops if not (hop.kind == trace_pb2.KERNEL and hop.hook == CONSUME)]
    if last and is_transmit(last[-1]):
        return Fate(FORWARDED, node, last[-1].interface or f"if{last[-1].ifindex}")
    if last and last[-1].kind == trace_pb2.KERNEL and last[-1].hook == RECEIVE:
        return Fate(DELIVERED, node, last[-1].netns_name or where(last[-1]), freed_unseen=True)
    return Fate(UNKNOWN, node)


def drop_reason_name(number: int) -> str:
    if number in flow_pb2.DropReason.values():
        return flow_pb2.DropReason.Name(number)
    return str(number) if number else ""


def _rule(hops: Sequence[trace_pb2.Hop], drop: trace_pb2.Hop) -> str:
    """The policy rule behind a drop: on the drop hop itself, or on the policy stage before it."""
    if drop.HasField("policy"):
        return drop.policy.rule
    decided = [hop for hop in hops if hop.HasField("policy") and hop.index <= drop.index]
    return decided[-1].policy.rule if decided else ""
