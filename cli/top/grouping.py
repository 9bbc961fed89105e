"""Which row of `flowscope top` a flow belongs to: its connection, as a person debugging reads one.

A row is `source → destination`, protocol/port, verdict and drop reason. The source port is left out on
purpose: it is ephemeral, so keeping it would make every connection its own row and hide "what talks to what".
A reply is turned around (the compact printer shows it as `<-`) so both directions of a connection land in the
same row, with the server's port. A flow whose direction the datapath could not tell (no is_reply: a connection
first seen mid-stream, a drop no conntrack knew) is read by its ports, as a person reads `:80 → :47960`: from a
port below the ephemeral range to one in it is a server answering (`observe` still shows it as it came).
Names come from the network and are cleaned of control characters before a terminal ever sees them.

An L7 flow (DNS, HTTP) belongs to a row of the L7 view instead: client → server, protocol/port, and what was
asked (the DNS name and query types; the HTTP method and path, without the query string, which would make a
row per request). Its response is turned around by its L7 type, and counts in its request's row.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from flowscope.api.flow import flow_pb2
from flowscope.cli.printer import fields
from flowscope.common import names

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DROPPING = (flow_pb2.DROPPED, flow_pb2.ERROR)
EPHEMERAL_FIRST = 32768  # where Linux's default ip_local_port_range starts (IANA's dynamic ports: 49152)


class RowKey(NamedTuple):
    """What makes a row; a NamedTuple because it is hashed once per flow, and tuples hash fastest."""

    source: str
    destination: str
    protocol: str  # `TCP/80`, `UDP/53`, `ICMPv4`
    verdict: str  # as the compact printer words it: FORWARDED, DROPPED, ALLOWED, DENIED...
    reason: str  # why it was dropped (kernel or Cilium reason), empty otherwise
    style: str  # the verdict's colour, as the compact printer colours it
    drop: bool


def clean(text: str) -> str:
    """Network-supplied text made safe to show: control characters become `?`."""
    return _CONTROL.sub("?", text)


def _name(endpoint: flow_pb2.Endpoint, service: flow_pb2.Service | None, address: str) -> str:
    """`ns/pod`, else `ns/service`, else the address (with its reserved identity: `10.0.0.1 (host)`)."""
    if endpoint.pod_name:
        return f"{endpoint.namespace}/{endpoint.pod_name}" if endpoint.namespace else endpoint.pod_name
    if service is not None and service.name:
        return f"{service.namespace}/{service.name}" if service.namespace else service.name
    reserved = names.RESERVED_IDENTITIES.get(endpoint.identity) if endpoint.identity else None
    if not address:
        return reserved or "?"
    return f"{address} ({reserved})" if reserved else address


def _ends(flow: flow_pb2.Flow) -> tuple[str, str]:
    if not flow.HasField("IP"):
        if flow.HasField("ethernet"):
            return flow.ethernet.source, flow.ethernet.destination
        return _name(flow.source, None, ""), _name(flow.destination, None, "")
    source_service = flow.source_service if flow.HasField("source_service") else None
    destination_service = flow.destination_service if flow.HasField("destination_service") else None
    return (
        _name(flow.source, source_service, flow.IP.source),
        _name(flow.destination, destination_service, flow.IP.destination),
    )


def _reason(flow: flow_pb2.Flow) -> str:
    """Why it was dropped, one word for one reason: the kernel's (NO_SOCKET), else the enum name
    (POLICY_DENIED), which a drop event and a denied policy verdict for the same packet both carry and which
    `--drop-reason-desc` takes, else the compact printer's words for a drop code without one."""
    if flow.verdict not in _DROPPING:
        return ""
    if flow.flowscope.kernel_drop_reason:
        return flow.flowscope.kernel_drop_reason
    if flow.drop_reason_desc:
        return flow_pb2.DropReason.Name(flow.drop_reason_desc)
    return fields.drop_reason(flow) if flow.event_type.type == names.EVENT_DROP else ""


_VERDICTS: dict[tuple[int, bool], tuple[str, str]] = {}


def _verdict(flow: flow_pb2.Flow) -> tuple[str, str]:
    """fields.verdict, remembered: its words depend on the verdict and on being a policy verdict only, and
    looking the enum name up again for every flow is a third of what a flow costs here."""
    cache_key = (flow.verdict, flow.event_type.type == names.EVENT_POLICY_VERDICT)
    words = _VERDICTS.get(cache_key)
    if words is None:
        words = _VERDICTS[cache_key] = fields.verdict(flow)
    return words


def row_key(flow: flow_pb2.Flow) -> RowKey:
    """The row this flow counts in."""
    source, destination = _ends(flow)
    source_port, destination_port = fields.ports(flow)
    if _from_the_server(flow, source_port, destination_port):
        source, destination, destination_port = destination, source, source_port
    kind = flow.l4.WhichOneof("protocol") or ""
    protocol = f"{kind}/{destination_port}" if destination_port and destination_port != "0" else kind
    verdict, style = _verdict(flow)
    return RowKey(
        clean(source),
        clean(destination),
        protocol,
        verdict,
        clean(_reason(flow)),
        style,
        flow.verdict in _DROPPING,
    )


def _from_the_server(flow: flow_pb2.Flow, source_port: str, destination_port: str) -> bool:
    """Whether the flow goes against its connection: its reply flag when there is one, else its ports."""
    if flow.HasField("is_reply"):
        return flow.is_reply.value
    if not (source_port.isdigit() and destination_port.isdigit()):
        return False
    return int(destination_port) >= EPHEMERAL_FIRST > int(source_port)


class L7Key(NamedTuple):
    """What makes an L7 row: client → server, the protocol and port, and what was asked (`GET /status/404`,
    `web.web.svc.lab. A`). A response counts in its request's row: it is turned around like a reply, and it
    carries what was asked (DNS: the question; HTTP: the request's method and url, as Hubble's pairing gives)."""

    source: str
    destination: str
    protocol: str  # `UDP/53`, `TCP/8080`
    kind: str  # `DNS`, `HTTP`, or `L7` when the flow's L7 fields are gone (its store entry was evicted)
    request: str


class L7Message(NamedTuple):
    """What one L7 flow adds to its row."""

    key: L7Key
    response: bool
    status: int  # a slot of the row's status counts: HTTP code // 100, DNS rcode (6: any other); -1 for none
    error: bool  # an HTTP 4xx/5xx or a DNS answer other than NOERROR
    latency_ns: int  # of a response from its request; 0 when unpaired


DNS_OTHER_RCODE = 6


def l7_message(flow: flow_pb2.Flow) -> L7Message:
    """The row and the counts of an L7 flow (flow.Type == L7)."""
    layer7 = flow.l7
    record = layer7.WhichOneof("record") if flow.HasField("l7") else None
    if record is not None:
        response = layer7.type == flow_pb2.RESPONSE
    else:
        response = flow.HasField("is_reply") and flow.is_reply.value
    source, destination = _ends(flow)
    source_port, destination_port = fields.ports(flow)
    if response:
        source, destination, destination_port = destination, source, source_port
    kind = flow.l4.WhichOneof("protocol") or ""
    protocol = f"{kind}/{destination_port}" if destination_port and destination_port != "0" else kind
    status, error = -1, False
    if record == "dns":
        label, request = "DNS", f"{layer7.dns.query} {','.join(layer7.dns.qtypes)}".strip() or "?"
        if response:
            status, error = min(layer7.dns.rcode, DNS_OTHER_RCODE), layer7.dns.rcode != 0
    elif record == "http":
        http = layer7.http
        # A response the agent could not pair carries no method or url: `?`, not a made-up `/`.
        label, request = "HTTP", f"{http.method} {_path(http.url)}" if http.method or http.url else "?"
        if response:
            status, error = (http.code // 100 if 100 <= http.code < 600 else 0), http.code >= 400
    else:
        label, request = ("L7", "?") if record is None else (record.upper(), "")
    key = L7Key(clean(source), clean(destination), protocol, label, clean(request))
    return L7Message(key, response, status, error, layer7.latency_ns if response else 0)


def _path(url: str) -> str:
    """The path of a request's url, without query or fragment (they make a row per request, and are redacted
    by default anyway): `http://web/status/404?x=1` and `/status/404` are both `/status/404`. By hand, not
    urlsplit: this runs once per HTTP flow, and a url from the network need not be one urlsplit accepts."""
    scheme, separator, rest = url.partition("://")
    if separator and "/" not in scheme:
        url = rest[len(rest.partition("/")[0]) :]  # the host goes
    path = url.partition("?")[0].partition("#")[0]
    return path or "/"
