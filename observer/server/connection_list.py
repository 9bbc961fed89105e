"""Control.ListConnections's answer: the datapath's connections (observer/datapath/connections.py) filtered
and named, as `flowscope ct` shows them.

The filters are checked here, so a bad one is INVALID_ARGUMENT with the reason. An address or port matches
either end, as the client sent it or as it was translated: `--ip <ClusterIP>` and `--ip <backend>` both find a
translated connection. Names come from the agent's own tables: the service of a frontend id from the registry
snapshot's service table (the ids the datapath was given), the rule from the policy's rule table.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from flowscope.api.control import control_pb2
from flowscope.common.names import TRACE_POINTS
from flowscope.observer.datapath.connections import Endpoints, TrackedConnection
from flowscope.observer.datapath.conntrack import Direction
from flowscope.observer.service_table import ServiceTable


@dataclass(frozen=True)
class ConnectionSource:
    """What ListConnections reads: the connections, and the tables that name their services and rules."""

    node: Callable[[], str]
    connections: Callable[[], list[TrackedConnection]]
    services: Callable[[], ServiceTable]
    rule_name: Callable[[int], str | None]


@dataclass(frozen=True)
class Filters:
    ip: str
    port: int
    protocol: int
    service: str

    def match(self, connection: TrackedConnection, service: str) -> bool:
        ends = [connection.original] + ([connection.translated] if connection.translated else [])
        return (
            (not self.ip or any(self.ip in (e.source, e.destination) for e in ends))
            and (not self.port or any(self.port in (e.source_port, e.destination_port) for e in ends))
            and (not self.protocol or connection.protocol == self.protocol)
            and (not self.service or service == self.service)
        )


def list_connections(
    source: ConnectionSource, request: control_pb2.ListConnectionsRequest, context: grpc.ServicerContext
) -> control_pb2.ConnectionList:
    try:
        filters = _filters(request)
    except ValueError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    services = source.services()
    named = [(c, _service_name(services, c.frontend_id)) for c in source.connections()]
    matched = [(c, service) for c, service in named if filters.match(c, service)]
    shown = matched[: request.limit] if request.limit else matched
    return control_pb2.ConnectionList(
        node=source.node(),
        connections=[_message(c, service, source.rule_name) for c, service in shown],
        matched=len(matched),
    )


def _filters(request: control_pb2.ListConnectionsRequest) -> Filters:
    ip = ""
    if request.ip:
        try:
            ip = str(ipaddress.ip_address(request.ip))
        except ValueError:
            raise ValueError(f"ip {request.ip!r} is not an IPv4 or IPv6 address") from None
    if request.port > 0xFFFF:
        raise ValueError(f"port {request.port} is not 1-65535")
    if request.protocol > 0xFF:
        raise ValueError(f"protocol {request.protocol} is not an IP protocol number (0-255)")
    namespace, slash, name = request.service.partition("/")
    if request.service and not (slash and namespace and name and "/" not in name):
        raise ValueError(f"service {request.service!r}: give it as namespace/name")
    return Filters(ip=ip, port=request.port, protocol=request.protocol, service=request.service)


def _service_name(services: ServiceTable, frontend_id: int) -> str:
    info = services.by_id.get(frontend_id) if frontend_id else None
    return f"{info.namespace}/{info.name}" if info is not None else ""


def _message(
    connection: TrackedConnection, service: str, rule_name: Callable[[int], str | None]
) -> control_pb2.Connection:
    message = control_pb2.Connection(
        protocol=connection.protocol,
        original=_tuple(connection.original),
        service=service,
        frontend_id=connection.frontend_id,
        scope=connection.scope,
        state=connection.state,
        idle=_duration(connection.idle_ns),
        age=_duration(connection.age_ns),
        expires_in=_duration(connection.expires_in_ns),
        forward=_direction(connection.forward),
        reply=_direction(connection.reply),
        verdict=connection.verdict,
        rule=(rule_name(connection.rule) or "") if connection.rule else "",
    )
    if connection.translated is not None:
        message.translated.CopyFrom(_tuple(connection.translated))
    return message


def _tuple(ends: Endpoints) -> control_pb2.ConnectionTuple:
    return control_pb2.ConnectionTuple(
        source_ip=ends.source,
        source_port=ends.source_port,
        destination_ip=ends.destination,
        destination_port=ends.destination_port,
    )


def _direction(direction: Direction) -> control_pb2.ConnectionDirection:
    return control_pb2.ConnectionDirection(
        packets=direction.packets,
        bytes=direction.bytes,
        ifindex=direction.ifindex,
        device=_device(direction.ifindex),
        point=TRACE_POINTS.get(direction.point, str(direction.point)) if direction.ifindex else "",
        tcp_flags_seen=direction.flags_seen,
    )


def _device(ifindex: int) -> str:
    if not ifindex:
        return ""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return ""


def _duration(nanoseconds: int) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(nanoseconds)
    return duration
