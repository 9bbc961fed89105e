"""Hubble's metric handlers written the plain way, one decoded flow at a time, as Hubble's Go code reads flows.

The agent counts batches of records with numpy; these count the flows the decoder makes of the same records,
flow by flow, with Hubble's tests (verdict, l4, reply, event type...). Tests compare the two: any difference
is a flow the vectorised counting reads differently from the flow a client is sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.common.icmp import ICMPV4_TYPES, ICMPV6_TYPES, icmp_type_code
from flowscope.common.names import DNS_RCODE_TEXT, POLICY_MATCH_TYPES, TRACE_POINTS

Key = tuple[str, frozenset[tuple[str, str]]]
_TYPES = {1: "Drop", 3: "Capture", 4: "Trace", 5: "PolicyVerdict", 129: "L7"}


def protocol(flow: flow_pb2.Flow) -> str:
    if flow.HasField("l7"):
        kind = flow.l7.WhichOneof("record")
        return {"dns": "DNS", "http": "HTTP", "kafka": "Kafka"}.get(kind or "", "Unknown L7")
    if flow.HasField("l4"):
        return flow.l4.WhichOneof("protocol") or "Unknown L4"
    return "Unknown flow"


def verdict(flow: flow_pb2.Flow) -> str:
    return flow_pb2.Verdict.Name(flow.verdict)


def key(metric: str, /, **labels: str) -> Key:
    return metric, frozenset(labels.items())


def reference(flows: Iterable[flow_pb2.Flow], kernel_names: bool = True) -> Counter[Key]:
    """Every handler's counts with its default options: flow, drop, tcp, port-distribution, icmp, policy, dns,
    http and flows-to-world."""
    counts: Counter[Key] = Counter()
    for flow in flows:
        event_type = flow.event_type.type
        type_name = _TYPES.get(event_type, "Unknown")
        subtype = ""
        if event_type == 4:
            subtype = TRACE_POINTS.get(flow.event_type.sub_type, "")
        elif event_type == 129:
            subtype = {"dns": "DNS", "http": "HTTP"}.get(flow.l7.WhichOneof("record") or "", "")
        elif type_name == "Unknown":
            subtype = str(event_type)
        counts[
            key(
                "hubble_flows_processed_total",
                protocol=protocol(flow),
                type=type_name,
                subtype=subtype,
                verdict=verdict(flow),
            )
        ] += 1
        if flow.verdict == flow_pb2.DROPPED:
            reason = flow.flowscope.kernel_drop_reason or flow_pb2.DropReason.Name(flow.drop_reason_desc)
            counts[key("hubble_drop_total", reason=reason, protocol=protocol(flow))] += 1
        l4 = flow.l4
        if flow.verdict in (flow_pb2.FORWARDED, flow_pb2.REDIRECTED) and flow.HasField("IP") and l4.HasField("TCP"):
            flags = l4.TCP.flags
            family = flow_pb2.IPVersion.Name(flow.IP.ipVersion)
            if l4.TCP.HasField("flags"):
                if flags.FIN:
                    counts[key("hubble_tcp_flags_total", flag="FIN", family=family)] += 1
                if flags.SYN:
                    counts[key("hubble_tcp_flags_total", flag="SYN-ACK" if flags.ACK else "SYN", family=family)] += 1
                if flags.RST:
                    counts[key("hubble_tcp_flags_total", flag="RST", family=family)] += 1
        if flow.verdict == flow_pb2.FORWARDED and flow.HasField("l4") and not flow.reply:
            kind = l4.WhichOneof("protocol")
            if kind in ("TCP", "UDP", "SCTP"):
                port = str(getattr(l4, kind).destination_port)
                counts[key("hubble_port_distribution_total", protocol=kind, port=port)] += 1
            elif kind in ("ICMPv4", "ICMPv6"):
                counts[key("hubble_port_distribution_total", protocol=kind, port="0")] += 1
        if l4.HasField("ICMPv4"):
            name = icmp_type_code(ICMPV4_TYPES, l4.ICMPv4.type, l4.ICMPv4.code)
            counts[key("hubble_icmp_total", family="IPv4", type=name)] += 1
        if l4.HasField("ICMPv6"):
            name = icmp_type_code(ICMPV6_TYPES, l4.ICMPv6.type, l4.ICMPv6.code)
            counts[key("hubble_icmp_total", family="IPv6", type=name)] += 1
        direction = flow_pb2.TrafficDirection.Name(flow.traffic_direction).lower()
        if event_type == 5:
            match = POLICY_MATCH_TYPES.get(flow.policy_match_type, "unknown")
            counts[
                key("hubble_policy_verdicts_total", direction=direction, match=match, action=verdict(flow).lower())
            ] += 1
        elif event_type == 129 and flow.HasField("l7"):
            match = "l7/" + (flow.l7.WhichOneof("record") or "")
            counts[
                key("hubble_policy_verdicts_total", direction=direction, match=match, action=verdict(flow).lower())
            ] += 1
        to_world = any(label.startswith("reserved:world") for label in flow.destination.labels)
        if to_world and flow.verdict == flow_pb2.FORWARDED and flow.HasField("is_reply") and not flow.is_reply.value:
            counts[key("hubble_flows_to_world_total", protocol=protocol(flow), verdict=verdict(flow))] += 1
        _l7(flow, direction, counts)
    return counts


def _l7(flow: flow_pb2.Flow, direction: str, counts: Counter[Key]) -> None:
    if flow.l7.HasField("dns"):
        dns = flow.l7.dns
        qtypes = ",".join(dns.qtypes)
        if flow.l7.type != flow_pb2.RESPONSE:
            counts[key("hubble_dns_queries_total", rcode="", qtypes=qtypes, ips_returned="")] += 1
        else:
            rcode = DNS_RCODE_TEXT.get(dns.rcode, "")
            counts[key("hubble_dns_responses_total", rcode=rcode, qtypes=qtypes, ips_returned=str(len(dns.ips)))] += 1
            for rrtype in dns.rrtypes:
                counts[key("hubble_dns_response_types_total", type=rrtype, qtypes=qtypes)] += 1
    if flow.l7.HasField("http"):
        http = flow.l7.http
        reporter = {"egress": "client", "ingress": "server"}.get(direction, "unknown")
        if flow.l7.type == flow_pb2.REQUEST:
            counts[
                key("hubble_http_requests_total", method=http.method, protocol=http.protocol, reporter=reporter)
            ] += 1
        elif flow.l7.type == flow_pb2.RESPONSE:
            counts[
                key(
                    "hubble_http_responses_total",
                    method=http.method,
                    protocol=http.protocol,
                    status=str(http.code),
                    reporter=reporter,
                )
            ] += 1


def scraped(families: Iterable[object], prefix: str = "hubble_") -> Counter[Key]:
    """The counter samples of parsed text-format families (prometheus_client.parser), as reference() keys;
    zero samples left out (a child exists from its first use)."""
    counts: Counter[Key] = Counter()
    for family in families:
        for sample in family.samples:  # type: ignore[attr-defined]
            if sample.name.startswith(prefix) and sample.name.endswith("_total") and sample.value:
                if sample.name == "hubble_lost_events_total":
                    continue
                counts[key(sample.name, **sample.labels)] += int(sample.value)
    return counts
