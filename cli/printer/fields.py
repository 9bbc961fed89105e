"""What the text formats say about a flow: its two ends, identities, type, verdict and summary, worded and
coloured as hubble's printer does (hubble/pkg/printer), plus flowscope's kernel drop reasons and counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flowscope.api.flow import flow_pb2
from flowscope.cli.printer.sink import Segment
from flowscope.common import names
from flowscope.common.icmp import icmp_text

HOST, PORT, IDENTITY = "cyan", "yellow", "magenta"
GREEN, RED, YELLOW = "green", "red", "yellow"

# Enum names by number, looked up once a flow: `Enum.values()` builds a list on every call.
_VERDICT_NAMES = {value.number: value.name for value in flow_pb2.Verdict.DESCRIPTOR.values}
_L7_TYPE_NAMES = {value.number: value.name for value in flow_pb2.L7FlowType.DESCRIPTOR.values}


def ports(flow: flow_pb2.Flow) -> tuple[str, str]:
    return layer4_ports(flow.l4)


def layer4_ports(l4: flow_pb2.Layer4) -> tuple[str, str]:
    kind = l4.WhichOneof("protocol")
    if kind in ("TCP", "UDP", "SCTP"):
        layer = getattr(l4, kind)
        return str(layer.source_port), str(layer.destination_port)
    return "", ""


def _host(ip: str, namespace: str, pod: str, service: str, dns: Sequence[str], translate: bool) -> str:
    if translate:
        if pod:
            return f"{namespace}/{pod}" if namespace else pod
        if service:
            return f"{namespace}/{service}" if namespace else service
        if dns:
            return ",".join(dns)
    return ip


def with_port(host: str, port: str) -> list[Segment]:
    """`host:port` (`[v6]:port`), or the host alone when the flow has no port."""
    if port and port != "0":
        shown = f"[{host}]" if ":" in host else host
        return [(shown + ":", HOST), (port, PORT)]
    return [(host, HOST)]


def _end(
    endpoint: flow_pb2.Endpoint,
    service: flow_pb2.Service | None,
    address: str,
    dns: Sequence[str],
    translate: bool,
) -> str:
    """One end: a service's namespace wins over the endpoint's (`ns/service` for a frontend without a pod)."""
    if service is None:
        return _host(address, endpoint.namespace, endpoint.pod_name, "", dns, translate)
    return _host(address, service.namespace, endpoint.pod_name, service.name, dns, translate)


def hosts(flow: flow_pb2.Flow, translate: bool = True) -> tuple[str, str] | None:
    """The ends of an IP flow without their ports (each shown `with_port`): `ns/pod`, `ns/service`, DNS names or
    the address. None for a flow without IP."""
    if not flow.HasField("IP"):
        return None
    ip = flow.IP
    source_service = flow.source_service if flow.HasField("source_service") else None
    destination_service = flow.destination_service if flow.HasField("destination_service") else None
    return (
        _end(flow.source, source_service, ip.source, flow.source_names, translate),
        _end(flow.destination, destination_service, ip.destination, flow.destination_names, translate),
    )


def endpoints(flow: flow_pb2.Flow, translate: bool = True) -> tuple[list[Segment], list[Segment]]:
    """Source and destination as `ns/pod:port`, `ns/service`, DNS names or the address; MAC addresses for a
    flow without IP."""
    ends = hosts(flow, translate)
    if ends is None:
        if flow.HasField("ethernet"):
            return [(flow.ethernet.source, HOST)], [(flow.ethernet.destination, HOST)]
        return [("", "")], [("", "")]
    src_port, dst_port = ports(flow)
    return with_port(ends[0], src_port), with_port(ends[1], dst_port)


def original_destination(flow: flow_pb2.Flow) -> list[Segment]:
    """` via 10.96.0.10:80`: the service frontend a translated flow's client addressed, where the flow's own
    addresses no longer show it (past the translation). Hubble's line has no place for it; the suffix follows the
    service's end (the destination, or the source of a reply). Nothing where the frontend is what the flow shows."""
    extra = flow.flowscope
    if not extra.HasField("original_destination"):
        return []
    frontend = extra.original_destination
    src_port, dst_port = ports(flow)
    reply = flow.HasField("is_reply") and flow.is_reply.value
    shown = (flow.IP.source, src_port) if reply else (flow.IP.destination, dst_port)
    if shown == (frontend.ip, str(frontend.port)):
        return []
    host = f"[{frontend.ip}]" if ":" in frontend.ip else frontend.ip
    return [(" via ", ""), (host + ":", HOST), (str(frontend.port), PORT)]


def identity(number: int) -> Segment:
    """`(ID:12345)`, or `(world)`, `(host)`... for Cilium's reserved identities."""
    reserved = names.RESERVED_IDENTITIES.get(number)
    return (f"({reserved})" if reserved else f"(ID:{number})", IDENTITY)


def flow_type(flow: flow_pb2.Flow) -> str:
    """The observation point, drop reason, `policy-verdict:L3-L4 INGRESS`, or `http-request`..."""
    if flow.HasField("l7"):
        l7 = flow.l7
        kind = _L7_TYPE_NAMES.get(l7.type, "L7").lower()
        record = l7.WhichOneof("record")
        if record == "dns":
            return f"dns-{kind} {l7.dns.observation_source}"
        return f"{record or 'l7'}-{kind}"
    event, sub_type = flow.event_type.type, flow.event_type.sub_type
    if event == names.EVENT_TRACE:
        return names.TRACE_POINTS.get(sub_type, str(sub_type))
    if event == names.EVENT_DROP:
        return drop_reason(flow)
    if event == names.EVENT_POLICY_VERDICT:
        match = names.POLICY_MATCH_TYPES.get(flow.policy_match_type, "unknown")
        return f"policy-verdict:{match} {flow_pb2.TrafficDirection.Name(flow.traffic_direction)}"
    for name, number in names.EVENT_TYPES.items():
        if number == event and event:
            return name
    return "UNKNOWN"


def drop_reason(flow: flow_pb2.Flow) -> str:
    """The kernel's own reason (NO_SOCKET, ...) when flowscope knows it, else Cilium's drop reason text."""
    kernel = flow.flowscope.kernel_drop_reason
    if kernel:
        return kernel
    sub_type = flow.event_type.sub_type
    if sub_type in names.DROP_REASON_TEXT:
        return names.DROP_REASON_TEXT[sub_type]
    if flow.drop_reason_desc:
        return flow_pb2.DropReason.Name(flow.drop_reason_desc)
    return str(sub_type)


def verdict(flow: flow_pb2.Flow, policy_names: bool = False) -> Segment:
    """The verdict coloured by outcome; a policy verdict says ALLOWED, DENIED or AUDITED, and with
    `policy_names` (--print-policy-names) which policies of its direction did: `ALLOWED BY name (kind)`."""
    value = flow.verdict
    text = _VERDICT_NAMES.get(value) or str(value)
    is_policy = flow.event_type.type == names.EVENT_POLICY_VERDICT
    if value in (flow_pb2.FORWARDED, flow_pb2.REDIRECTED):
        return ("ALLOWED" + _by(flow, True, policy_names) if is_policy else text, GREEN)
    if value in (flow_pb2.DROPPED, flow_pb2.ERROR):
        return ("DENIED" + _by(flow, False, policy_names) if is_policy else text, RED)
    if value == flow_pb2.AUDIT:
        return ("AUDITED" if is_policy else text, YELLOW)
    if value in (flow_pb2.TRACED, flow_pb2.TRANSLATED):
        return (text, YELLOW)
    return (text, "")


def _by(flow: flow_pb2.Flow, allowed: bool, policy_names: bool) -> str:
    """` BY name (kind), ...`: the policies of the verdict's direction that have both, as hubble prints them."""
    if not policy_names:
        return ""
    policies: Iterable[flow_pb2.Policy] = ()
    if flow.traffic_direction == flow_pb2.INGRESS:
        policies = flow.ingress_allowed_by if allowed else flow.ingress_denied_by
    elif flow.traffic_direction == flow_pb2.EGRESS:
        policies = flow.egress_allowed_by if allowed else flow.egress_denied_by
    named = [f"{policy.name} ({policy.kind})" for policy in policies if policy.name and policy.kind]
    return " BY " + ", ".join(named) if named else ""


def summary(flow: flow_pb2.Flow) -> str:
    """The server's Summary (or the same words made here), authentication, an aggregate's counts, and whether
    an L7 message was cut short by the capture (its fields are the ones complete before the cut)."""
    return (flow.Summary or _made_summary(flow)) + summary_suffix(flow)


def summary_suffix(flow: flow_pb2.Flow) -> str:
    """What the summary says after the words: authentication, an aggregate's counts, truncation."""
    text = ""
    if flow.auth_type != flow_pb2.DISABLED:
        text += "; " + flow_pb2.AuthType.Name(flow.auth_type)
    extra = flow.flowscope
    if extra.aggregated:
        text += f"; {_count(extra.packets, 'packet')}, {_count(extra.bytes, 'byte')}"
    if extra.truncated and flow.HasField("l7"):
        text += "; truncated"
    return text


def _count(number: int, noun: str) -> str:
    """`1 packet`, `3,456 bytes`: an aggregate of one packet is common (a lone SYN, a ping)."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


_TCP_FLAG_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")


def tcp_flags_text(flags: flow_pb2.TCPFlags) -> str:
    return ", ".join(name for name in _TCP_FLAG_ORDER if getattr(flags, name))


def _made_summary(flow: flow_pb2.Flow) -> str:
    if flow.HasField("l7"):
        return _l7_summary(flow.l7)
    l4 = flow.l4
    kind = l4.WhichOneof("protocol")
    if kind == "TCP":
        flags = flow.flowscope.tcp_flags_seen if flow.flowscope.aggregated else l4.TCP.flags
        return "TCP Flags: " + tcp_flags_text(flags)
    if kind == "ICMPv4":
        return icmp_text(4, l4.ICMPv4.type, l4.ICMPv4.code)
    if kind == "ICMPv6":
        return icmp_text(6, l4.ICMPv6.type, l4.ICMPv6.code)
    return kind or ""


def _l7_summary(l7: flow_pb2.Layer7) -> str:
    """Hubble's Summary of an L7 flow (cilium pkg/hubble/parser/seven), for flows that come without one."""
    record = l7.WhichOneof("record")
    if record == "dns":
        dns = l7.dns
        query = f"{dns.query} {','.join(dns.qtypes)}"
        if l7.type == flow_pb2.RESPONSE:
            source = "Proxy" if dns.observation_source == "proxy" else "Query"
            return f"DNS Answer {_dns_answer(dns)} TTL: {dns.ttl} ({source} {query})"
        return f"DNS Query {query}"
    if record == "http":
        http = l7.http
        if l7.type == flow_pb2.RESPONSE:
            return f"{http.protocol} {http.code} {l7.latency_ns // 1_000_000}ms ({http.method} {http.url})"
        return f"{http.protocol} {http.method} {http.url}"
    return ""


def _dns_answer(dns: flow_pb2.DNS) -> str:
    """An error's name, or the addresses and CNAMEs quoted as Go's %q quotes them."""
    if dns.rcode:
        return f"RCode: {names.DNS_RCODE_TEXT.get(dns.rcode, 'Unknown')}"
    parts = [_quoted(",".join(dns.ips))] if dns.ips else []
    if dns.cnames:
        parts.append("CNAMEs: " + _quoted(",".join(dns.cnames)))
    return " ".join(parts)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
