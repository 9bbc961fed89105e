"""A Flow as a row of the flows table, in ClickHouse's RowBinary format (the cheapest one to write and exact
for bytes: a String column holds the Flow's protobuf as it is).

RowBinary: integers little-endian at their width, a String (or each String of an Array) as a LEB128 length and
its bytes, an Array as a LEB128 count and its items. The date column is left out: ClickHouse computes it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2

_TCP_FLAG_NAMES = tuple(field.name for field in flow_pb2.TCPFlags.DESCRIPTOR.fields)


def _uint(width: int) -> Callable[[Any], bytes]:
    return struct.Struct(f"<{ {1: 'B', 2: 'H', 4: 'I', 8: 'Q'}[width] }").pack


def _int(width: int) -> Callable[[Any], bytes]:
    return struct.Struct(f"<{ {1: 'b', 4: 'i'}[width] }").pack


def leb128(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return leb128(len(data)) + data


def _strings(values: Any) -> bytes:
    return leb128(len(values)) + b"".join(_string(v) for v in values)


_U8, _U16, _U32, _U64, _I8, _I32 = _uint(1), _uint(2), _uint(4), _uint(8), _int(1), _int(4)

# (column, its encoder), in the order rows are written; the names follow observer/history/schema/001_flows.sql.
COLUMNS: tuple[tuple[str, Callable[[Any], bytes]], ...] = (
    ("time_ns", _U64),
    ("node", _string),
    ("uuid", _string),
    ("verdict", _U8),
    ("drop_reason", _U32),
    ("type", _U8),
    ("event_type", _I32),
    ("event_subtype", _I32),
    ("observation_point", _U8),
    ("traffic_direction", _U8),
    ("is_reply", _I8),
    ("ip_version", _U8),
    ("source_ip", _string),
    ("destination_ip", _string),
    ("l4", _string),
    ("source_port", _U16),
    ("destination_port", _U16),
    ("tcp_flags", _strings),
    ("source_namespace", _string),
    ("source_pod", _string),
    ("source_workload", _string),
    ("source_identity", _U32),
    ("source_labels", _strings),
    ("source_names", _strings),
    ("destination_namespace", _string),
    ("destination_pod", _string),
    ("destination_workload", _string),
    ("destination_identity", _U32),
    ("destination_labels", _strings),
    ("destination_names", _strings),
    ("interface", _string),
    ("l7", _string),
    ("l7_type", _U8),
    ("l7_latency_ns", _U64),
    ("dns_query", _string),
    ("dns_rcode", _U32),
    ("http_method", _string),
    ("http_url", _string),
    ("http_code", _U32),
    ("flow", _string),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


def values(response: observer_pb2.GetFlowsResponse, flow_bytes: bytes | None = None) -> tuple[Any, ...]:
    """A flow response's column values; the node is the response's (a relay's flows carry their node)."""
    f = response.flow
    src, dst = f.source, f.destination
    kind = f.l4.WhichOneof("protocol") or ""
    ports = (0, 0)
    if kind in ("TCP", "UDP", "SCTP"):
        layer4 = getattr(f.l4, kind)
        ports = (layer4.source_port, layer4.destination_port)
    flags = [name for name in _TCP_FLAG_NAMES if getattr(f.l4.TCP.flags, name)] if kind == "TCP" else []
    l7 = f.l7.WhichOneof("record") or ""
    ns = response.time.ToNanoseconds() if response.HasField("time") else f.time.ToNanoseconds()
    return (
        ns,
        response.node_name or f.node_name,
        f.uuid,
        f.verdict,
        f.drop_reason_desc,
        f.Type,
        f.event_type.type,
        f.event_type.sub_type,
        f.trace_observation_point,
        f.traffic_direction,
        (1 if f.is_reply.value else 0) if f.HasField("is_reply") else -1,
        f.IP.ipVersion,
        f.IP.source,
        f.IP.destination,
        kind,
        ports[0],
        ports[1],
        flags,
        src.namespace,
        src.pod_name,
        src.workloads[0].name if src.workloads else "",
        src.identity,
        list(src.labels),
        list(f.source_names),
        dst.namespace,
        dst.pod_name,
        dst.workloads[0].name if dst.workloads else "",
        dst.identity,
        list(dst.labels),
        list(f.destination_names),
        f.interface.name,
        l7,
        f.l7.type,
        f.l7.latency_ns,
        f.l7.dns.query,
        f.l7.dns.rcode,
        f.l7.http.method,
        f.l7.http.url,
        f.l7.http.code,
        flow_bytes if flow_bytes is not None else f.SerializeToString(),
    )


def row_binary(response: observer_pb2.GetFlowsResponse) -> bytes:
    """One flow response as a RowBinary row of COLUMNS."""
    return b"".join(encode(value) for (_, encode), value in zip(COLUMNS, values(response), strict=True))


class RowReader:
    """Reads RowBinary rows of (time_ns UInt64, node String, flow String) from chunks as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[tuple[int, str, bytes]]:
        self._buffer += chunk
        buffer, at = self._buffer, 0
        while True:
            row = _row(buffer, at)
            if row is None:
                break
            at, value = row
            yield value
        del buffer[:at]

    @property
    def pending(self) -> int:
        return len(self._buffer)


def _row(buffer: bytearray, at: int) -> tuple[int, tuple[int, str, bytes]] | None:
    if len(buffer) - at < 8:
        return None
    ns = int.from_bytes(buffer[at : at + 8], "little")
    node = _read_string(buffer, at + 8)
    if node is None:
        return None
    at, node_bytes = node
    flow = _read_string(buffer, at)
    if flow is None:
        return None
    at, flow_bytes = flow
    return at, (ns, node_bytes.decode(), flow_bytes)


def _read_string(buffer: bytearray, at: int) -> tuple[int, bytes] | None:
    length = shift = 0
    while True:
        if at >= len(buffer):
            return None
        byte = buffer[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if at + length > len(buffer):
        return None
    return at + length, bytes(buffer[at : at + length])
