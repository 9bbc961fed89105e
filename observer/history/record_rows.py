"""A batch of event records straight into RowBinary rows of the flows table, without a Flow message per flow.

Building each flow's message and reading its fields back in Python was most of what storing a flow cost the
agent (~31 µs a flow). But most columns of a row are the same for every flow of one kind: the addresses, the
endpoints, the interface, the verdict, the direction are a function of the record's header and of the few bytes
of its packet the parser reads. So, per batch, in numpy:

- each record's packet is read where a plain packet has its fields (Ethernet, then IPv4 or IPv6 without
  options' surprises, then TCP, UDP, SCTP or ICMP): its addresses, protocol, ports (ICMP type and code) and TCP
  flags. A record whose bytes are laid out otherwise (VLAN tags, IPv6 extension headers, fragments, a header
  cut short, no IP), an L7 record (its columns come from the L7 store) and a lost event are not plain;
- a plain record's key is those packet fields and the header fields the decoder reads for the columns; one
  record of each key is decoded, its row written by `rows.row_binary` and cut into what every flow of the key
  shares. A key whose ports the decoded flow does not show as read here (which would mean the parser and this
  reading disagree) is never used; its flows are decoded one by one;
- each flow then gets its own time, ports, uuid, source and destination names and the Flow's bytes around the
  shared parts. The key holds all the decoder's shape is made of too (MACs, trace reason, tunnel, ... :
  parser/shapes.py), so a flow without fields of its own beyond its time, uuid, ports and counts (no names, TLS
  ClientHello, service or policy rule: FlowDecoder's rare fields) is the key's pieces (parser/wire.FlowPieces)
  around those, as the decoder writes it; a rare flow's bytes are the decoder's (FlowDecoder.encode_values).

What is not plain is decoded as before and written by `row_binary`: the rows are the same either way (tests
compare them). The shared parts are kept per endpoint snapshot, as the decoder keeps its shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common.names import (
    EVENT_L7,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    XLATED_FLAG,
)
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.events import F_AGGREGATE, F_IPV6
from flowscope.observer.history.rows import FIXED, FIXED_COLUMNS, leb128, row_binary, string
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.parser.services import service_ids
from flowscope.observer.parser.wire import FlowPieces

_ETHERNET = 14
_IPV4, _IPV6 = 0x0800, 0x86DD
_PORTED = np.array([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP])
_L4 = np.array([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP, IPPROTO_ICMPV6])
_TCP_FLAGS_END = 14  # the parser reads the flags (NS included) once it has these bytes of the TCP header
_L4_COMPLETE = ((IPPROTO_TCP, 20), (IPPROTO_UDP, 8), (IPPROTO_SCTP, 12), (IPPROTO_ICMP, 8), (IPPROTO_ICMPV6, 4))
_PORTED_NAMES = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_SCTP: "SCTP"}  # Layer4's fields with ports
_MAX_SHAPES = 4096
_FLAGS = 4  # the flags' place in a record's values (observer/events.py's order)
_SHORT = [bytes((size,)) for size in range(0x80)]  # one-byte LEB128 lengths

# FIXED's layout as a numpy dtype, so a batch's fixed-width columns are filled as arrays and packed at once.
_FIXED_DTYPE = np.dtype([(name, f"<{code}") for name, code in zip(FIXED_COLUMNS, FIXED.format[1:], strict=True)])
assert _FIXED_DTYPE.itemsize == FIXED.size, "record_rows out of step with rows.FIXED"

# What the decoder reads of a record's header for a flow's shape (besides the packet): the key's header part.
_HEADER_KEY = (
    "type", "subtype", "flags", "ifindex", "ep_id", "src_identity", "dst_identity", "trace_reason", "verdict",
    "policy_flags", "drop_reason", "tcp_flags_seen", "vni", "location",
)  # fmt: skip


@dataclass(frozen=True)
class EncodedRows:
    """Rows already in RowBinary, handed to the writer among responses (ClickHouseWriter.export)."""

    rows: list[bytes]


@dataclass
class _Shape:
    """What every flow of one key writes: its fixed-width columns (its own time and ports set per flow), the
    strings between the uuid and the Flow's bytes, the arrays before and between the names, and the Flow's
    bytes around its own fields (made from the key's first flow without rare fields)."""

    fixed: tuple[int, ...]
    ported: str  # "TCP", "UDP" or "SCTP": the port columns (and the Flow's ports) are each flow's own
    counts: bool  # an aggregated report: the Flow's packet and byte counts are its own
    texts: bytes  # source_ip ... http_url
    flags_and_source_labels: bytes
    destination_labels: bytes
    pieces: FlowPieces | None = field(default=None)

    def learn(self, flow: bytes) -> None:
        """The pieces, from the bytes the decoder made of a flow of this key without rare fields."""
        shape = flow_pb2.Flow.FromString(flow)
        shape.ClearField("time")  # the pieces write each flow's (and the uuid, ports and counts: not taken)
        self.pieces = FlowPieces(shape, time=True, uuid=True, ports=self.ported, counts=self.counts)


class RecordRows:
    """Turns a batch's flow records into rows; one per agent (its decoder), used on the exporter's thread."""

    def __init__(self, decoder: FlowDecoder) -> None:
        self._decoder = decoder
        self._node = string(decoder.node_name)
        self._snapshot: Snapshot | None = None
        self._shapes: dict[bytes, _Shape | None] = {}
        self.decoded = 0  # flows made into a message and read back, as samples of a key or one by one

    def rows(self, records: np.ndarray, rows: np.ndarray, first_seq: int) -> list[bytes]:
        """The rows of `records[rows]` (flow records, in order; `first_seq`: the sequence number of records[0])."""
        if not len(rows):
            return []
        batch = records[rows]
        seqs = (first_seq + rows).tolist()
        values = batch.tolist()
        packet = _read_plain(batch)
        shapes = self._shapes_of(batch, packet, values, seqs)
        fixed = self._fixed(batch, packet, shapes)
        return self._join(batch, values, seqs, shapes, fixed, packet)

    def _shapes_of(
        self, batch: np.ndarray, packet: np.ndarray, values: list[tuple], seqs: list[int]
    ) -> list[_Shape | None]:
        """Each record's shape; None for a record decoded on its own."""
        snapshot = self._decoder.registry.snapshot
        if snapshot is not self._snapshot or len(self._shapes) >= _MAX_SHAPES:
            self._snapshot, self._shapes = snapshot, {}
        shapes: list[_Shape | None] = [None] * len(batch)
        plain = np.flatnonzero(packet["plain"])
        if not len(plain):
            return shapes
        keys = _keys(batch[plain], packet[plain])
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        known = []
        for key, at in zip(unique.tolist(), first.tolist(), strict=True):
            if key not in self._shapes:
                row = plain[at]
                self._shapes[key] = self._shape(values[row], seqs[row], packet[row])
            known.append(self._shapes[key])
        for row, index in zip(plain.tolist(), inverse.ravel().tolist(), strict=True):
            shapes[row] = known[index]
        return shapes

    def _shape(self, values: tuple, seq: int, packet: np.void) -> _Shape | None:
        """A key's shared parts, cut out of the row `row_binary` writes for one of its flows."""
        row = row_binary(self._response(values, seq))
        fixed = FIXED.unpack_from(row)
        at = _skip(row, FIXED.size, 2)  # node, uuid
        texts_end = _skip(row, at, 14)  # source_ip ... http_url
        flow_end = _skip(row, texts_end, 1)
        labels_end = _skip(row, flow_end, 2, array=True)  # tcp_flags, source_labels
        names_end = _skip(row, labels_end, 1, array=True)
        ported = _PORTED_NAMES.get(int(packet["protocol"]), "")
        ports = (fixed[FIXED_COLUMNS.index("source_port")], fixed[FIXED_COLUMNS.index("destination_port")])
        if ported and ports != (packet["sport"], packet["dport"]):
            return None  # the parser read this packet otherwise than _read_plain: decode its flows one by one
        return _Shape(
            fixed=fixed,
            ported=ported,
            counts=bool(values[_FLAGS] & F_AGGREGATE),
            texts=row[at:texts_end],
            flags_and_source_labels=row[flow_end:labels_end],
            destination_labels=row[names_end : _skip(row, names_end, 1, array=True)],
        )

    def _fixed(self, batch: np.ndarray, packet: np.ndarray, shapes: list[_Shape | None]) -> bytes:
        """The fixed-width columns of every shaped record, packed (others' are left zero: their rows are whole)."""
        fixed = np.zeros(len(batch), dtype=_FIXED_DTYPE)
        shaped = [row for row, shape in enumerate(shapes) if shape is not None]
        if shaped:
            fixed[shaped] = [shapes[row].fixed for row in shaped]  # type: ignore[union-attr]
            fixed["time_ns"] = batch["ts"]
            ported = np.zeros(len(batch), dtype=bool)
            ported[shaped] = [bool(shapes[row].ported) for row in shaped]  # type: ignore[union-attr]
            fixed["source_port"] = np.where(ported, packet["sport"], fixed["source_port"])
            fixed["destination_port"] = np.where(ported, packet["dport"], fixed["destination_port"])
        return fixed.tobytes()

    def _join(
        self,
        batch: np.ndarray,
        values: list[tuple],
        seqs: list[int],
        shapes: list[_Shape | None],
        fixed: bytes,
        packet: np.ndarray,
    ) -> list[bytes]:
        decoder = self._decoder
        encode, uuid, node, size = decoder.encode_values, decoder.ids.uuid, self._node, FIXED.size
        names = _Names(decoder)
        source_names, destination_names = batch["src_names"].tolist(), batch["dst_names"].tolist()
        plain = (~self._rare(batch, packet)).tolist()
        times, packets, byte_counts = batch["ts"].tolist(), batch["packets"].tolist(), batch["bytes"].tolist()
        sports, dports = packet["sport"].tolist(), packet["dport"].tolist()
        out = []
        for row, (record, seq, shape) in enumerate(zip(values, seqs, shapes, strict=True)):
            if shape is None:
                out.append(row_binary(self._response(record, seq)))
                continue
            text = uuid(seq)
            pieces = shape.pieces
            if pieces is not None and plain[row]:
                flow = pieces.flow(times[row], text, sports[row], dports[row], packets[row], byte_counts[row])
            else:
                flow = encode(record, seq)
                if plain[row]:
                    shape.learn(flow)
            size_of_flow = len(flow)
            out.append(
                b"".join(
                    (
                        fixed[row * size : (row + 1) * size],
                        node,
                        _SHORT[len(text)],
                        text.encode(),
                        shape.texts,
                        _SHORT[size_of_flow] if size_of_flow < 0x80 else leb128(size_of_flow),
                        flow,
                        shape.flags_and_source_labels,
                        names.of(source_names[row]),
                        shape.destination_labels,
                        names.of(destination_names[row]),
                    )
                )
            )
        return out

    def _rare(self, batch: np.ndarray, packet: np.ndarray) -> np.ndarray:
        """The records whose flows have fields of their own beyond time, uuid, ports and counts (FlowDecoder's
        rare fields), or may have: names, a policy rule, a service, a TLS ClientHello. Their bytes are the
        decoder's."""
        decoder = self._decoder
        rare = np.zeros(len(batch), dtype=bool)
        if decoder.name_sets is not None:
            rare |= (batch["src_names"] | batch["dst_names"]) != 0
        translated = (batch["policy_flags"] & XLATED_FLAG) != 0
        if decoder.rules is not None:
            rare |= (batch["rule"] != 0) & ~translated
        services = decoder.registry.snapshot.services
        if services:
            rare |= translated | (service_ids(batch, services, "src") != 0) | (service_ids(batch, services, "dst") != 0)
        return rare | packet["hello"]

    def _response(self, values: tuple, seq: int) -> observer_pb2.GetFlowsResponse:
        """The response the exporter would have made of this record (Selection.messages)."""
        self.decoded += 1
        flow = self._decoder.decode_values(values, seq)
        response = observer_pb2.GetFlowsResponse(flow=flow, node_name=self._decoder.node_name)
        response.time.FromNanoseconds(values[0])
        return response


class _Names:
    """A batch's name arrays by name-set id, as the decoder writes them: only while it knows the name sets."""

    def __init__(self, decoder: FlowDecoder) -> None:
        self._sets = decoder.name_sets
        self._arrays: dict[int, bytes] = {}

    def of(self, set_id: int) -> bytes:
        if not set_id or self._sets is None:
            return b"\x00"
        array = self._arrays.get(set_id)
        if array is None:
            names = self._sets.names(set_id)
            array = self._arrays[set_id] = leb128(len(names)) + b"".join(string(name) for name in names)
        return array


# What _read_plain reads of a packet; all but `plain` go into the key (the ports only where they are ICMP's).
_PACKET_FIELDS = [
    ("v6", "?"), ("macs", "S12"), ("src", "S16"), ("dst", "S16"), ("protocol", "u1"), ("sport", "<u2"),
    ("dport", "<u2"), ("tcp_flags", "<u2"), ("truncated", "?"),
]  # fmt: skip
_PACKET = np.dtype([("plain", "?"), ("hello", "?"), *_PACKET_FIELDS])


def _read_plain(batch: np.ndarray) -> np.ndarray:
    """What the parser would read of each record's packet, where it is plain (see the module's docstring)."""
    n = len(batch)
    out = np.zeros(n, dtype=_PACKET)
    data = _bytes(batch)
    width = data.shape[1]
    captured = np.minimum(batch["len_cap"].astype(np.int64), width)
    rows = np.arange(n)

    def at(offsets: np.ndarray) -> np.ndarray:
        return data[rows, np.minimum(offsets, width - 1)].astype(np.int64)

    ethertype = data[:, 12].astype(np.int64) << 8 | data[:, 13]
    v4 = (ethertype == _IPV4) & (data[:, 14] >> 4 == 4) & (data[:, 14] & 0x0F >= 5) & (batch["flags"] & F_IPV6 == 0)
    v6 = (ethertype == _IPV6) & (data[:, 14] >> 4 == 6)
    fragment = (data[:, 20].astype(np.int64) << 8 | data[:, 21]) & 0x1FFF != 0
    v4 &= ~fragment
    l4_at = np.where(v4, _ETHERNET + (data[:, 14] & 0x0F).astype(np.int64) * 4, _ETHERNET + 40)
    protocol = np.where(v4, data[:, 23], data[:, 20])
    tcp = protocol == IPPROTO_TCP
    needed = np.where(tcp, _TCP_FLAGS_END, 4)
    plain = (v4 | v6) & np.isin(protocol, _L4) & (captured >= l4_at + needed) & (batch["type"] != EVENT_L7)
    out["plain"] = plain
    out["v6"] = v6
    out["protocol"] = protocol
    out["src"] = np.where(v4[:, None], np.pad(data[:, 26:30], ((0, 0), (0, 12))), data[:, 22:38]).view("S16").ravel()
    out["dst"] = np.where(v4[:, None], np.pad(data[:, 30:34], ((0, 0), (0, 12))), data[:, 38:54]).view("S16").ravel()
    icmp = (protocol == IPPROTO_ICMP) | (protocol == IPPROTO_ICMPV6)
    out["sport"] = np.where(icmp, at(l4_at), at(l4_at) << 8 | at(l4_at + 1))
    out["dport"] = np.where(icmp, at(l4_at + 1), at(l4_at + 2) << 8 | at(l4_at + 3))
    out["tcp_flags"] = np.where(tcp, at(l4_at + 13) | (at(l4_at + 12) & 0x01) << 8, 0)
    out["macs"] = np.ascontiguousarray(data[:, :12]).view("S12").ravel()
    complete = np.zeros(n, dtype=np.int64)
    for number, length in _L4_COMPLETE:
        complete[protocol == number] = length
    out["truncated"] = captured - l4_at < complete
    # A TCP segment that may start a TLS ClientHello (as FlowDecoder's test of its first bytes): a rare flow.
    start = l4_at + (at(l4_at + 12) >> 4) * 4
    out["hello"] = (
        tcp
        & (batch["len_cap"] >= l4_at + 13)
        & (start + 6 <= batch["len_cap"])
        & (at(start) == 0x16)
        & (at(start + 1) == 0x03)
        & (at(start + 5) == 0x01)
    )
    out[~plain] = np.zeros(1, dtype=_PACKET)
    return out


def _bytes(batch: np.ndarray) -> np.ndarray:
    """The records' captured bytes as an (n, caplen) uint8 array, a view of the batch."""
    fields = batch.dtype.fields
    assert fields is not None, "a batch is a structured array"
    field = fields["data"]
    view = np.dtype(
        {"names": ["data"], "formats": [(np.uint8, field[0].itemsize)], "offsets": [field[1]],
         "itemsize": batch.dtype.itemsize}
    )  # fmt: skip
    return np.ascontiguousarray(batch).view(view)["data"]


def _keys(batch: np.ndarray, packet: np.ndarray) -> np.ndarray:
    """One bytes key per record: the header fields the columns depend on and what was read of its packet (an
    IPv4 address as 4 bytes and 12 zeros, told apart from an IPv6 one by `v6`)."""
    header = batch[list(_HEADER_KEY)]
    fields = [(name, header.dtype[name]) for name in _HEADER_KEY]
    ported = np.isin(packet["protocol"], _PORTED)
    keys = np.zeros(len(batch), dtype=[*fields, *_PACKET_FIELDS])
    for name in _HEADER_KEY:
        keys[name] = header[name]
    for name in ("v6", "macs", "src", "dst", "protocol", "tcp_flags", "truncated"):
        keys[name] = packet[name]
    keys["sport"] = np.where(ported, 0, packet["sport"])  # ICMP's type and code are the shape's
    keys["dport"] = np.where(ported, 0, packet["dport"])
    return keys.view(f"V{keys.dtype.itemsize}").ravel()


def _skip(row: bytes, at: int, count: int, *, array: bool = False) -> int:
    """Where `count` RowBinary strings (or arrays of strings) starting at `at` end."""
    for _ in range(count):
        items = 1
        if array:
            items, at = _uleb(row, at)
        for _ in range(items):
            length, at = _uleb(row, at)
            at += length
    return at


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at
