"""The words for one hop: where it was seen, what the datapath or the kernel decided there, and what changed
since the hop before (NAT, a moved head), in the compact printer's vocabulary (cli/printer/fields.py)."""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2
from flowscope.cli.printer import fields
from flowscope.cli.printer.sink import Segment
from flowscope.cli.trace.fate import drop_reason_name
from flowscope.common.icmp import icmp_text

KIND_STYLES = {
    trace_pb2.TC_ENTRY: "cyan",
    trace_pb2.TC_STAGE: "",
    trace_pb2.TC_PASS: "green",
    trace_pb2.TC_DROP: "bold red",
    trace_pb2.KERNEL: "magenta",
}
_KIND_WORDS = {trace_pb2.TC_ENTRY: "tc entry ", trace_pb2.TC_PASS: "tc pass ", trace_pb2.TC_DROP: "tc drop "}


def as_flow(hop: trace_pb2.Hop) -> flow_pb2.Flow:
    """The hop's headers and verdict as a Flow, so the flow printers' helpers word them the same way."""
    return flow_pb2.Flow(IP=hop.IP, l4=hop.l4, ethernet=hop.ethernet, verdict=hop.verdict)


def tuple_text(hop: trace_pb2.Hop) -> str:
    """`10.200.1.11:43512 → 10.200.2.12:9000`: the addresses and ports the hop saw."""
    source, destination = fields.endpoints(as_flow(hop), translate=False)
    return "".join(text for text, _ in source) + " → " + "".join(text for text, _ in destination)


def protocol_text(hop: trace_pb2.Hop) -> str:
    """`TCP SYN`, `UDP`, `ICMPv4 EchoRequest`."""
    l4 = hop.l4
    kind = l4.WhichOneof("protocol")
    if kind == "TCP":
        return f"TCP {fields.tcp_flags_text(l4.TCP.flags)}".rstrip()
    if kind == "ICMPv4":
        return icmp_text(4, l4.ICMPv4.type, l4.ICMPv4.code)
    if kind == "ICMPv6":
        return icmp_text(6, l4.ICMPv6.type, l4.ICMPv6.code)
    return kind or ""


def label(hop: trace_pb2.Hop) -> Segment:
    """`tc entry from-endpoint`, `stage:policy`, `tc drop to-endpoint`, `skb:kfree_skb`."""
    return (_KIND_WORDS.get(hop.kind, "") + hop.hook, KIND_STYLES.get(hop.kind, ""))


def decisions(hop: trace_pb2.Hop, previous: trace_pb2.Hop | None) -> list[str]:
    """What was decided or changed at this hop, each as a few words."""
    said: list[str] = []
    if hop.HasField("conntrack"):
        said.append(_conntrack(hop.conntrack))
    if hop.HasField("policy"):
        said.append(_policy(hop.policy))
    if hop.aggregation:
        said.append(f"flow {hop.aggregation}")
    if hop.HasField("tunnel") and hop.tunnel.protocol:
        tunnel = hop.tunnel
        name = flow_pb2.Tunnel.Protocol.Name(tunnel.protocol).lower()
        said.append(f"{name} vni {tunnel.vni} {tunnel.IP.source} → {tunnel.IP.destination}")
    if previous is not None and hop.HasField("IP") and previous.HasField("IP"):
        before, after = tuple_text(previous), tuple_text(hop)
        if before != after:
            said.append(f"nat {before} ⇒ {after}")
    if hop.head_changed and not (previous is not None and previous.head_changed):
        said.append("head moved")
    if hop.kind == trace_pb2.TC_DROP and hop.drop_reason:
        said.append(drop_reason_name(hop.drop_reason))
    if hop.drop_reason_desc:
        said.append(f"reason {hop.drop_reason_desc}")
    if hop.function:
        said.append(f"in {hop.function}")
    if hop.hook == "net:net_dev_xmit":
        said.append(f"rc {hop.xmit_rc}")
    return said


def verdict(hop: trace_pb2.Hop) -> Segment:
    if hop.verdict == flow_pb2.VERDICT_UNKNOWN:
        return ("", "")
    return fields.verdict(as_flow(hop))


def _conntrack(ct: trace_pb2.Conntrack) -> str:
    if not ct.tracked:
        return "ct untracked"
    state = flow_pb2.TraceReason.Name(ct.state) if ct.state in flow_pb2.TraceReason.values() else str(ct.state)
    words = f"ct {state.removeprefix('TRACE_REASON_')}"
    if ct.reply:
        words += " reply"
    if ct.policy:
        words += f", policy {ct.policy}"
    return words


def _policy(policy: trace_pb2.PolicyDecision) -> str:
    decided = {flow_pb2.FORWARDED: "ALLOWED", flow_pb2.DROPPED: "DENIED", flow_pb2.AUDIT: "AUDITED"}
    words = "policy " + decided.get(policy.verdict, flow_pb2.Verdict.Name(policy.verdict))
    words += f" by {policy.rule}" if policy.rule else " (no rule: default)"
    if policy.match_type:
        words += f" {policy.match_type}"
    if not policy.enforced:
        words += " (not enforced)"
    return words
