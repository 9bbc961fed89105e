"""Which row of `flowscope top` a flow belongs to: its connection, as a person debugging reads one.

A row is `source → destination`, protocol/port, verdict and drop reason. The source port is left out on
purpose: it is ephemeral, so keeping it would make every connection its own row and hide "what talks to what".
A reply is turned around (the compact printer shows it as `<-`) so both directions of a connection land in the
same row, with the server's port. Names come from the network and are cleaned of control characters before a
terminal ever sees them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from flowscope.api.flow import flow_pb2
from flowscope.cli.printer import fields
from flowscope.common import names

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DROPPING = (flow_pb2.DROPPED, flow_pb2.ERROR)


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
    reply = flow.HasField("is_reply") and flow.is_reply.value
    if reply:
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
