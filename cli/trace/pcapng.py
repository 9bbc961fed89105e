"""A packet-path session as a pcapng file (the pcapng draft, docs/reference/packet-path.md): every hop one frame,
so Wireshark and `tshark -r` show a packet's whole path with one filter, `frame.packet_id == N`.

The layout is the one retis chose, plus what pcapng defines for exactly this case:
- one interface (IDB) per observation point, named "node/netns/interface/hook", so a frame says where it was seen;
- epb_packetid, which the draft says must be the same for one packet seen on several interfaces: the path's id;
- epb_flags for the direction at the hook, epb_verdict (Linux eBPF TC) for the tc action, and a comment with the
  hop's one-line summary.

The hops' bytes start with an Ethernet header already (the datapath makes one up for kernel hops whose sk_buff
has none), so every interface is linktype Ethernet. Blocks are little-endian; a block is written whole, so a
session cut short still leaves a file that reads up to its last hop.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2
from flowscope.cli.printer import fields

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_LINKTYPE_ETHERNET = 1
_NANOSECONDS = 9  # if_tsresol: 10^-9 s

_OPT_ENDOFOPT, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_EPB_FLAGS, _EPB_PACKETID, _EPB_VERDICT = 2, 5, 7
_VERDICT_LINUX_EBPF_TC = 1

_INBOUND, _OUTBOUND, _NO_DIRECTION = 0b01, 0b10, 0b00
_INBOUND_KERNEL_HOOKS = frozenset({"net:netif_receive_skb"})
_OUTBOUND_KERNEL_HOOKS = frozenset({"net:net_dev_queue", "net:net_dev_xmit"})

_U64 = 1 << 64
_TCP_ANALYSIS_NOTE = (
    "Each hop of a packet is a frame of its own: Wireshark's TCP analysis takes the repeats for retransmissions "
    "(turn it off: -o tcp.analyze_sequence_numbers:FALSE)."
)

_InterfaceKey = tuple[str, str, str, str]  # node, netns, interface, hook


class PcapngWriter:
    """Writes a session's hops to `out` as they arrive: `with PcapngWriter.create(path) as w: w.write(event)`.

    The section header goes out with the first event, so it can name the session's filter when that first event
    is the session's start (or when `filter` is given). Starts of other nodes' sessions and session ends come
    too late for a header already written and are left out; the hops are the file."""

    def __init__(self, out: BinaryIO, *, filter: str = "", owns: bool = False) -> None:
        self._out = out
        self._owns = owns
        self._filter = filter
        self._started = False
        self._interfaces: dict[_InterfaceKey, int] = {}

    @classmethod
    def create(cls, path: str | Path, *, filter: str = "") -> Self:
        """A writer over a new file at `path` (replacing one there), closed with the writer."""
        return cls(open(path, "wb"), filter=filter, owns=True)  # the writer closes it

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def write(self, event: trace_pb2.TraceEvent, path_id: int | None = None) -> None:
        """Write a hop as one frame; `path_id` is the path a client linked this packet into (across nodes, by
        digest): it is the epb_packetid as it is, so `tshark -Y 'frame.packet_id == <path id>'` shows that path.
        Without one, a packet's hops on its node share an id hashed from (node, packet id)."""
        kind = event.WhichOneof("event")
        if not self._started:
            self._section(event.started if kind == "started" else None)
        if kind != "hop":
            return
        hop = event.hop
        interface = self._interface(event.node_name, hop)
        packet_id = _packet_id(event.node_name, hop.packet_id) if path_id is None else _checked_u64(path_id)
        options = [
            _option(_EPB_FLAGS, struct.pack("<I", _direction(hop.hook))),
            _option(_EPB_PACKETID, struct.pack("<Q", packet_id)),
        ]
        if hop.kind in (trace_pb2.TC_PASS, trace_pb2.TC_DROP):
            options.append(_option(_EPB_VERDICT, struct.pack("<Bq", _VERDICT_LINUX_EBPF_TC, hop.tc_action)))
        options.append(_option(_OPT_COMMENT, (hop.summary or made_summary(event.node_name, hop)).encode()))
        stamp = hop.time if hop.HasField("time") else event.time
        nanoseconds = stamp.seconds * 1_000_000_000 + stamp.nanos
        data = hop.data
        body = struct.pack(
            "<IIIII", interface, nanoseconds >> 32, nanoseconds & 0xFFFFFFFF, len(data), max(hop.length, len(data))
        )
        self._block(_EPB, body + _padded(data) + _options(options))

    def close(self) -> None:
        """Finish the file: a session without a single event still leaves a valid, empty capture."""
        if not self._started:
            self._section(None)
        self._out.flush()
        if self._owns:
            self._out.close()

    def _section(self, started: trace_pb2.SessionStarted | None) -> None:
        self._started = True
        options = [_option(_SHB_USERAPPL, b"flowscope trace")]
        if started is not None:
            options.append(_option(_OPT_COMMENT, _session_text(started).encode()))
        elif self._filter:
            options.append(_option(_OPT_COMMENT, f"filter: {self._filter}".encode()))
        options.append(_option(_OPT_COMMENT, _TCP_ANALYSIS_NOTE.encode()))
        unknown_section_length = -1
        body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, unknown_section_length)
        self._block(_SHB, body + _options(options))

    def _interface(self, node: str, hop: trace_pb2.Hop) -> int:
        """The id of the hop's observation point, announcing it (an IDB) the first time it is seen."""
        key = (node, hop.netns_name, hop.interface, hop.hook)
        known = self._interfaces.get(key)
        if known is not None:
            return known
        self._interfaces[key] = len(self._interfaces)
        options = [
            _option(_IF_NAME, "/".join(part or "-" for part in key).encode()),
            _option(_IF_DESCRIPTION, _hook_description(hop).encode()),
            _option(_IF_TSRESOL, bytes([_NANOSECONDS])),
        ]
        any_length = 0  # snaplen 0: no limit
        self._block(_IDB, struct.pack("<HHI", _LINKTYPE_ETHERNET, 0, any_length) + _options(options))
        return self._interfaces[key]

    def _block(self, block_type: int, body: bytes) -> None:
        total = 12 + len(body)  # type, length ... length
        self._out.write(struct.pack("<II", block_type, total) + body + struct.pack("<I", total))


def made_summary(node: str, hop: trace_pb2.Hop) -> str:
    """The one line a hop gets when the agent sent none: "<node> <hook> <src> -> <dst> <outcome>"."""
    source, destination = _ends(hop)
    words = [node or "-", hop.hook or "-"]
    if source or destination:
        words.append(f"{source or '?'} -> {destination or '?'}")
    outcome = _outcome(hop)
    if outcome:
        words.append(outcome)
    return " ".join(words)


def _ends(hop: trace_pb2.Hop) -> tuple[str, str]:
    """Addresses and ports as the flow printers word them (the MAC addresses when the hop has no IP)."""
    source, destination = fields.endpoints(flow_pb2.Flow(IP=hop.IP, l4=hop.l4, ethernet=hop.ethernet), translate=False)
    return "".join(text for text, _ in source), "".join(text for text, _ in destination)


def _outcome(hop: trace_pb2.Hop) -> str:
    if hop.kind == trace_pb2.TC_DROP:
        known = hop.drop_reason in flow_pb2.DropReason.values()
        return f"dropped ({flow_pb2.DropReason.Name(hop.drop_reason) if known else hop.drop_reason})"
    if hop.kind == trace_pb2.TC_PASS:
        return "passed"
    if hop.hook == "skb:kfree_skb":
        return f"freed ({hop.drop_reason_desc or 'no reason'}) by {hop.function or '?'}"
    if hop.hook == "skb:consume_skb":
        return f"consumed by {hop.function or '?'}"
    if hop.hook == "net:net_dev_xmit":
        return f"rc {hop.xmit_rc}"
    return ""


def _direction(hook: str) -> int:
    """epb_flags' direction: into the node's datapath at from-* hooks and on receive, out at to-* and transmit;
    none for stages and for the kernel freeing or consuming the packet."""
    if hook.startswith("from-") or hook in _INBOUND_KERNEL_HOOKS:
        return _INBOUND
    if hook.startswith("to-") or hook in _OUTBOUND_KERNEL_HOOKS:
        return _OUTBOUND
    return _NO_DIRECTION


def _hook_description(hop: trace_pb2.Hop) -> str:
    if hop.kind == trace_pb2.KERNEL:
        return f"kernel tracepoint {hop.hook}"
    if hop.kind == trace_pb2.TC_STAGE:
        return f"flowscope tail-call stage {hop.hook.removeprefix('stage:')}"
    return f"flowscope tc hook {hop.hook}"


def _session_text(started: trace_pb2.SessionStarted) -> str:
    parts = [f"filter: {started.filter or 'every packet'}", f"count: {started.count}"]
    if started.HasField("duration"):
        parts.append(f"duration: {started.duration.ToTimedelta().total_seconds():g}s")
    parts.append("kernel hooks: " + ("yes" if started.kernel_hooks else "no"))
    parts.extend(started.notes)
    return "; ".join(parts)


def _packet_id(node: str, packet_id: str) -> int:
    """A stable u64 for a packet on its node: its hops share it, and no other node's packet gets it."""
    return int.from_bytes(hashlib.blake2b(f"{node}\0{packet_id}".encode(), digest_size=8).digest(), "little")


def _checked_u64(path_id: int) -> int:
    if not 0 <= path_id < _U64:
        raise ValueError(f"path id {path_id} does not fit epb_packetid (an unsigned 64-bit number)")
    return path_id


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _padded(value)


def _options(options: list[bytes]) -> bytes:
    return b"".join(options) + struct.pack("<HH", _OPT_ENDOFOPT, 0)


def _padded(value: bytes) -> bytes:
    """pcapng aligns packet data and option values to 32 bits."""
    return value + bytes(-len(value) % 4)
