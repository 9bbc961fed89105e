"""Hop records (struct fs_trace_hop) to trace.Hop messages: what a person debugging reads of each hop.

The packet as seen at the hop is decoded by the flow decoder itself (observer/parser/): a hop's `ev` is a
`struct fs_event` like every other, so addresses, ports, devices and endpoints read exactly as in flows. What
is the hop's own: where it was (hook, stage, tracepoint), what the stage decided (conntrack, policy, monitor
aggregation), the tc action, and for kernel hops the kernel's reason and the function.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2
from flowscope.common.names import POLICY_MATCH_TYPES, TRACE_POINTS
from flowscope.observer.datapath.c_source import tail_call_slots
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.parser.decoder import FlowDecoder
from flowscope.observer.trace.digest import ETH_P_IP, ETH_P_IPV6, TCP, digest, l3_offset, segment

TC_ACT_OK = 0
# What the hop record's numbers stand for; tests/trace/test_hop_numbers.py keeps them equal to the C headers.
STAGES = {slot: name.removeprefix("stage_") for slot, name in tail_call_slots().items()}  # calls.h
TRACEPOINTS = {  # FS_HOP_TP_* (trace.h)
    1: "net:netif_receive_skb",
    2: "net:net_dev_queue",
    3: "net:net_dev_xmit",
    4: "skb:kfree_skb",
    5: "skb:consume_skb",
}
KFREE, XMIT = 4, 3
POLICY_TODO = {0: "pass", 1: "judge", 2: "drop", 3: "untracked"}  # FS_POLICY_* (state.h)
V_KNOWN, V_ALLOWED, V_ENFORCED = 0x20, 0x40, 0x80  # FS_TRACE_V_* (trace.h)
CT_REPLY = 1  # FS_CT_REPLY (maps.h)


@dataclass
class HopContext:
    """What decoding a hop needs from the agent."""

    decoder: FlowDecoder
    registry: EndpointRegistry
    wall_offset_ns: Callable[[], int]  # CLOCK_MONOTONIC -> wall clock
    kernel_reasons: Mapping[int, str]
    locate: Callable[[int], str | None]
    rule_name: Callable[[int], str | None]


def packet_id(record: np.void) -> str:
    return f"{int(record['first_ts']):x}-{int(record['first_head']):x}"


def decode_hop(record: np.void, index: int, ctx: HopContext, payload: bool) -> trace_pb2.Hop:
    """One hop record as a Hop message; `index` is its place in its packet's path on this node."""
    ev = record["ev"]
    kind = int(record["kind"])
    flow = ctx.decoder.decode(ev, 0)
    hop = trace_pb2.Hop(
        session_id=0,
        packet_id=packet_id(record),
        index=index,
        ktime_ns=int(ev["ts"]),
        kind=cast(trace_pb2.HopKind, kind),
        skb=int(record["skb"]),
        netns=int(record["netns"]),
        cpu=int(ev["cpu"]),
        length=int(ev["len_orig"]),
    )
    hop.time.FromNanoseconds(int(ev["ts"]) + ctx.wall_offset_ns())
    hop.head_changed = bool(record["head"]) and int(record["head"]) != int(record["first_head"])
    data = bytes(ev["data"])[: int(ev["len_cap"])]
    hop.digest = digest(data)
    piece = segment(data)
    hop.flow_digest, hop.tcp_seq, hop.payload_length = piece.flow, piece.seq, piece.length
    hop.data = data if payload else data[: _headers_end(data)]
    if flow.HasField("ethernet"):
        hop.ethernet.CopyFrom(flow.ethernet)
    if flow.HasField("IP"):
        hop.IP.CopyFrom(flow.IP)
    if flow.HasField("l4"):
        hop.l4.CopyFrom(flow.l4)
    if flow.HasField("tunnel"):
        hop.tunnel.CopyFrom(flow.tunnel)
    if kind == trace_pb2.KERNEL:
        _kernel(hop, record, ctx)
    else:
        _tc(hop, record, flow, ctx)
    hop.summary = summary(hop)
    return hop


def _tc(hop: trace_pb2.Hop, record: np.void, flow: flow_pb2.Flow, ctx: HopContext) -> None:
    ev = record["ev"]
    point = int(record["point"])
    hop.observation_point = flow.trace_observation_point
    point_name = TRACE_POINTS.get(point, str(point))
    stage = int(record["stage"])
    hop.hook = {
        trace_pb2.TC_ENTRY: point_name,
        trace_pb2.TC_STAGE: f"stage:{STAGES.get(stage, stage)}",
        trace_pb2.TC_PASS: f"{point_name}:pass",
        trace_pb2.TC_DROP: f"{point_name}:drop",
    }.get(hop.kind, point_name)
    hop.ifindex = int(ev["ifindex"])
    hop.interface = flow.interface.name or ctx.registry.snapshot.interface_name(hop.ifindex)
    hop.netns_name = _netns_name(int(ev["ep_id"]), ctx)
    if hop.kind == trace_pb2.TC_STAGE and STAGES.get(stage) in ("ct", "policy", "send_trace"):
        ct_state = int(record["ct_state"])
        hop.conntrack.tracked = ct_state != 0
        hop.conntrack.state = cast(flow_pb2.TraceReason, ct_state)  # FS_CT_* are flow.TraceReason's numbers
        hop.conntrack.reply = int(record["ct_dir"]) == CT_REPLY
        hop.conntrack.policy = POLICY_TODO.get(int(record["policy_todo"]), "")
        hop.aggregation = "reported" if record["emit"] else "silenced"
    flags = int(ev["policy_flags"])
    if flags & V_KNOWN and hop.kind != trace_pb2.TC_ENTRY:
        allowed = bool(flags & V_ALLOWED)
        hop.policy.verdict = flow_pb2.FORWARDED if allowed else flow_pb2.DROPPED
        hop.policy.rule = (ctx.rule_name(int(ev["rule"])) or "") if ev["rule"] else ""
        hop.policy.match_type = POLICY_MATCH_TYPES.get(flags & 7, "")
        hop.policy.enforced = bool(flags & V_ENFORCED)
    if hop.kind in (trace_pb2.TC_PASS, trace_pb2.TC_DROP):
        hop.tc_action = int(record["action"])
        hop.verdict = flow_pb2.FORWARDED if hop.tc_action == TC_ACT_OK else flow_pb2.DROPPED
        hop.aggregation = "reported" if record["emit"] else "silenced"
    if hop.kind == trace_pb2.TC_DROP:
        hop.drop_reason = flow.drop_reason_desc or cast(flow_pb2.DropReason, int(ev["drop_reason"]))


def _kernel(hop: trace_pb2.Hop, record: np.void, ctx: HopContext) -> None:
    ev = record["ev"]
    stage = int(record["stage"])
    hop.hook = TRACEPOINTS.get(stage, f"tracepoint {stage}")
    hop.ifindex = int(ev["ifindex"])
    ep_id = int(ev["ep_id"])  # the endpoint living in the namespace it was seen in (0: the node)
    if not hop.netns:
        return _kernel_details(hop, record, ctx)  # it could not tell where: the session fills in (sessions.py)
    hop.netns_name = _netns_name(ep_id, ctx)
    if ep_id == 0:
        hop.interface = ctx.registry.snapshot.interface_name(hop.ifindex) or _if_name(hop.ifindex)
    _kernel_details(hop, record, ctx)


def _kernel_details(hop: trace_pb2.Hop, record: np.void, ctx: HopContext) -> None:
    ev = record["ev"]
    stage = int(record["stage"])
    if int(ev["location"]):
        hop.function = ctx.locate(int(ev["location"])) or f"0x{int(ev['location']):x}"
    if stage == KFREE:
        hop.drop_reason_desc = ctx.kernel_reasons.get(int(ev["drop_reason"]), str(int(ev["drop_reason"])))
        hop.verdict = flow_pb2.FORWARDED if int(record["action"]) else flow_pb2.DROPPED
        hop.tc_action = int(record["action"])
    if stage == XMIT:
        hop.xmit_rc = int(record["action"])


def _netns_name(ep_id: int, ctx: HopContext) -> str:
    if not ep_id:
        return "node"
    endpoint = ctx.registry.snapshot.local.get(ep_id)
    return f"{endpoint.namespace}/{endpoint.pod}" if endpoint else f"endpoint {ep_id}"


def _if_name(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex) if ifindex else ""
    except OSError:
        return ""


def _headers_end(data: bytes) -> int:
    """Where the L4 header ends in the captured bytes: the payload stays in the agent unless asked for."""
    offset, ethertype = l3_offset(data)
    if ethertype == ETH_P_IP and len(data) >= offset + 20:
        protocol = data[offset + 9]
        offset += (data[offset] & 0x0F) * 4
    elif ethertype == ETH_P_IPV6 and len(data) >= offset + 40:
        protocol = data[offset + 6]
        offset += 40
    else:
        return len(data)
    if protocol == TCP and len(data) >= offset + 13:
        return min(len(data), offset + (data[offset + 12] >> 4) * 4)
    return min(len(data), offset + 8)  # UDP's header, SCTP's and ICMP's first 8 bytes


def summary(hop: trace_pb2.Hop) -> str:
    """One line: where, the packet, and what happened here."""
    where = " ".join(p for p in (hop.netns_name, hop.interface, hop.hook) if p)
    parts = [where]
    if hop.IP.source:
        parts.append(f"{hop.IP.source} -> {hop.IP.destination}")
    if hop.conntrack.tracked:
        parts.append(f"ct {flow_pb2.TraceReason.Name(hop.conntrack.state).lower()}")
    if hop.policy.verdict:
        rule = f" by {hop.policy.rule}" if hop.policy.rule else ""
        parts.append(f"policy {flow_pb2.Verdict.Name(hop.policy.verdict)}{rule}")
    if hop.kind == trace_pb2.TC_DROP:
        parts.append(f"DROPPED {flow_pb2.DropReason.Name(hop.drop_reason)}")
    if hop.drop_reason_desc:
        lost = "" if hop.verdict == flow_pb2.FORWARDED else "DROPPED "
        parts.append(f"{lost}{hop.drop_reason_desc} in {hop.function}")
    elif hop.function:
        parts.append(f"by {hop.function}")
    return "  ".join(parts)
