"""A Flow as a row of the flows table, in ClickHouse's RowBinary format (the cheapest one to write and exact
for bytes: a String column holds the Flow's protobuf as it is).

RowBinary: integers little-endian at their width, a String (or each String of an Array) as a LEB128 length and
its bytes, an Array as a LEB128 count and its items. The date column is left out: ClickHouse computes it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from flowscope.api.observer import observer_pb2


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


_SHORT = [bytes((size,)) for size in range(0x80)]  # the one-byte LEB128 lengths, most strings' here


def string(text: str) -> bytes:
    """A String column's value: its UTF-8 bytes after their length."""
    data = text.encode()
    return (_SHORT[len(data)] if len(data) < 0x80 else leb128(len(data))) + data


# The INSERT names its columns, so a row may list them in any order: the fixed-width ones first, packed by one
# struct, then the strings and arrays. Names follow observer/history/schema/001_flows.sql.
FIXED = struct.Struct("<QBIBiiBBbBHHIIBQII")
FIXED_COLUMNS = (
    "time_ns", "verdict", "drop_reason", "type", "event_type", "event_subtype", "observation_point",
    "traffic_direction", "is_reply", "ip_version", "source_port", "destination_port", "source_identity",
    "destination_identity", "l7_type", "l7_latency_ns", "dns_rcode", "http_code",
)  # fmt: skip
STRING_COLUMNS = (
    "node", "uuid", "source_ip", "destination_ip", "l4", "source_namespace", "source_pod", "source_workload",
    "destination_namespace", "destination_pod", "destination_workload", "interface", "l7", "dns_query",
    "http_method", "http_url", "flow",
)  # fmt: skip
ARRAY_COLUMNS = ("tcp_flags", "source_labels", "source_names", "destination_labels", "destination_names")
COLUMN_NAMES = (*FIXED_COLUMNS, *STRING_COLUMNS, *ARRAY_COLUMNS)


def row_binary(response: observer_pb2.GetFlowsResponse) -> bytes:
    """One flow response as a RowBinary row of COLUMN_NAMES; the node is the response's (a relay's flows carry
    their node's name)."""
    f = response.flow
    src, dst, l4, l7 = f.source, f.destination, f.l4, f.l7
    kind = l4.WhichOneof("protocol") or ""
    sport = dport = 0
    flags: list[str] = []
    if kind == "TCP":
        tcp = l4.TCP
        sport, dport = tcp.source_port, tcp.destination_port
        flags = [field.name for field, value in tcp.flags.ListFields() if value]
    elif kind in ("UDP", "SCTP"):
        layer = getattr(l4, kind)
        sport, dport = layer.source_port, layer.destination_port
    record = l7.WhichOneof("record") or ""
    dns, http = l7.dns, l7.http
    time = response.time if response.HasField("time") else f.time
    ip = f.IP
    fixed = FIXED.pack(
        time.seconds * 1_000_000_000 + time.nanos,
        f.verdict,
        f.drop_reason_desc,
        f.Type,
        f.event_type.type,
        f.event_type.sub_type,
        f.trace_observation_point,
        f.traffic_direction,
        (1 if f.is_reply.value else 0) if f.HasField("is_reply") else -1,
        ip.ipVersion,
        sport,
        dport,
        src.identity,
        dst.identity,
        l7.type,
        l7.latency_ns,
        dns.rcode,
        http.code,
    )
    texts = (
        response.node_name or f.node_name,
        f.uuid,
        ip.source,
        ip.destination,
        kind,
        src.namespace,
        src.pod_name,
        src.workloads[0].name if src.workloads else "",
        dst.namespace,
        dst.pod_name,
        dst.workloads[0].name if dst.workloads else "",
        f.interface.name,
        record,
        dns.query,
        http.method,
        http.url,
    )
    out = [fixed]
    append, short = out.append, _SHORT
    for text in texts:  # written out, not a helper: a call per string was a third of the row's cost
        data = text.encode()
        append(short[len(data)] if len(data) < 0x80 else leb128(len(data)))
        append(data)
    data = f.SerializeToString()
    append(leb128(len(data)))
    append(data)
    for array in (flags, src.labels, f.source_names, dst.labels, f.destination_names):
        append(short[len(array)] if len(array) < 0x80 else leb128(len(array)))
        for text in array:
            data = text.encode()
            append(short[len(data)] if len(data) < 0x80 else leb128(len(data)))
            append(data)
    return b"".join(out)


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
