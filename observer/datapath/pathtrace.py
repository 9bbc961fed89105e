"""The datapath's side of packet-path sessions (bpf/include/flowscope/trace.h, bpf/pathtrace.c), as the agent holds it.

    tracer = PathTracer(datapath)            # the Datapath's maps and its tracepoint programs
    tracer.start(slot, session_id, count, terms)  # the datapath picks and follows packets for this slot
    hops = tracer.reader().read_batch(0.05)  # struct fs_trace_hop records, a numpy array
    tracer.stop(slot)                        # forgets the slot's packets; the last session detaches the tracepoints

Why the tracepoints attach only while a session runs: each costs every packet of the machine a call, even with
nothing to follow. They are raw tracepoints, cheaper than classic ones (no perf record per call:
bpf/pathtrace.c). A session's slot goes live in two steps, terms first, then the config bit, so that the
datapath never sees an active slot with a half-written filter; it stops in the opposite order.

Lifetime: the tracepoint programs hang on file descriptors this process holds, so a killed agent takes them along.
The maps live as long as the datapath's programs (pinned links keep them after kill -9); the next agent starts
with `trace_active` 0 (its own config), so a dead agent's sessions pick nothing more.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from flowscope.observer.datapath.btf import BtfError, running_kernel
from flowscope.observer.datapath.c_source import header_define
from flowscope.observer.datapath.kdrop_layout import DropReasons, KernelLayout, KernelLayoutError
from flowscope.observer.datapath.netns_maps import node_namespaces, own_netns_inode, write_namespaces
from flowscope.observer.datapath.ringbuf import RingReader
from flowscope.observer.events import event_dtype

if TYPE_CHECKING:
    from flowscope.observer.datapath.loader import Datapath

log = logging.getLogger(__name__)

SESSIONS_MAX = header_define("trace.h", "FS_PATH_SESSIONS_MAX")
PAGE_SIZE = 4096

# struct fs_trace_hop before its event
HOP_HEADER_FIELDS: list[tuple[str, str]] = [
    ("skb", "<u8"),
    ("first_ts", "<u8"),
    ("first_head", "<u8"),
    ("head", "<u8"),
    ("netns", "<u4"),
    ("kind", "u1"),
    ("point", "u1"),
    ("session", "u1"),
    ("stage", "u1"),
    ("ct_state", "u1"),
    ("ct_dir", "u1"),
    ("policy_todo", "u1"),
    ("emit", "u1"),
    ("action", "<i4"),
]
HOP_HEADER_SIZE = 48

# The tracepoints, by the name of the program that follows each (bpf/pathtrace.c).
TRACEPOINTS: dict[str, str] = {
    "net:netif_receive_skb": "hop_netif_receive_skb",
    "net:net_dev_queue": "hop_net_dev_queue",
    "net:net_dev_xmit": "hop_net_dev_xmit",
    "skb:kfree_skb": "hop_kfree_skb",
    "skb:consume_skb": "hop_consume_skb",
}


@cache
def hop_dtype(caplen: int) -> np.dtype:
    """The dtype of one `struct fs_trace_hop` of a datapath compiled with FS_CAPLEN=caplen."""
    dtype = np.dtype([*HOP_HEADER_FIELDS, ("ev", event_dtype(caplen))], align=False)
    assert dtype.itemsize == HOP_HEADER_SIZE + event_dtype(caplen).itemsize, dtype.itemsize
    return dtype


@cache
def _layout_defines() -> tuple[str, ...]:
    try:
        btf = running_kernel()
        defines = {**KernelLayout.of(btf).defines(), **DropReasons.of(btf).defines()}
    except (OSError, KernelLayoutError, BtfError) as exc:
        log.warning("packet-path sessions: no kernel hops (%s)", exc)
        return ()
    return tuple(f"-D{name}={value}U" for name, value in defines.items())


def kernel_flags() -> list[str]:
    """The -D flags that compile bpf/pathtrace.c's tracepoints: the running kernel's sk_buff offsets from BTF
    (read once a process); none when BTF cannot give them, and the tracepoints are then left out."""
    defines = _layout_defines()
    return list(defines)


@dataclass(frozen=True)
class SlotState:
    session_id: int
    count: int
    picked: int
    lost: int


class PathTracer:
    """Session slots in the datapath's maps, the tracepoints while any slot is live, and the hops' ring."""

    def __init__(self, datapath: Datapath) -> None:
        self._datapath = datapath
        self._bpf: Any = datapath.bpf
        self._sessions = self._bpf[b"trace_sessions"]
        self._packets = self._bpf[b"trace_packets"]
        self._netns = self._bpf[b"trace_netns"]
        self.kernel_hops = datapath.kernel_hops
        self._attached = False
        self._active = 0
        self._lock = threading.Lock()
        self._reader: RingReader | None = None
        self.node_netns = own_netns_inode()  # the agent runs in its node's namespace
        self._followed: dict[int, int] = {}

    # slots

    def start(self, slot: int, session_id: int, count: int, terms: bytes, nterms: int) -> None:
        """Make `slot` pick up to `count` packets matching the encoded terms, and follow them."""
        with self._lock:
            value = self._sessions.Leaf()
            value.id = session_id
            value.count = count
            value.picked = 0
            value.nterms = nterms
            value.lost = 0
            ctypes.memmove(ctypes.addressof(value.terms), terms, min(len(terms), ctypes.sizeof(value.terms)))
            self._sessions[self._sessions.Key(slot)] = value
            if not self._active:
                self._recount()
                if self.kernel_hops:
                    self._attach()
            self._active |= 1 << slot
            self._datapath.update_config(trace_active=self._active)

    def stop(self, slot: int) -> None:
        """Stop `slot`: no more picking, its packets forgotten; the tracepoints go with the last live slot."""
        with self._lock:
            self._active &= ~(1 << slot)
            self._datapath.update_config(trace_active=self._active)
            self._sessions[self._sessions.Key(slot)] = self._sessions.Leaf()
            for key, packet in list(self._packets.items()):
                if packet.session == slot:
                    with contextlib.suppress(KeyError):
                        del self._packets[key]
            if not self._active and self._attached:
                self._detach()

    def _recount(self) -> None:
        """Set `trace_followed` to what trace_packets holds, before the first slot goes live: nothing picks
        packets then, so the count is exact. Later, stop() deletes a slot's packets without taking them off the
        count (the kernel adds to it at the same time): it only errs on the side of looking, until this runs again."""
        followed = self._bpf[b"trace_followed"]
        followed[followed.Key(0)] = followed.Leaf(len(self._packets.items()))

    def state(self, slot: int) -> SlotState:
        value = self._sessions[self._sessions.Key(slot)]
        return SlotState(int(value.id), int(value.count), int(value.picked), int(value.lost))

    def follows(self, slot: int, quiet_ns: int) -> int:
        """How many packets of `slot` the datapath still follows: not freed, not gone from the node, and heard
        of in the last `quiet_ns` (some frees pass no tracepoint: such a packet just goes quiet)."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return sum(1 for packet in self._packets.values() if packet.session == slot and now - packet.last_ts < quiet_ns)

    # the node's namespaces (observer/attachments.py NamespaceFollower)

    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None:
        """Follow packets in the node's namespace and in these endpoints' (endpoint id -> netns name or path)."""
        wanted = node_namespaces(self.node_netns, endpoints)
        if wanted != self._followed:
            write_namespaces(self._netns, wanted)
            self._followed = wanted

    def follow_devices(self, ifindexes: Iterable[int]) -> None:
        """Nothing to do: a session follows packets on every device of the node's namespaces."""

    def namespaces(self) -> dict[int, int]:
        return dict(self._followed)

    # hops

    def reader(self) -> RingReader:
        if self._reader is None:
            ring = self._bpf[b"trace_events"]
            size = header_define("trace.h", "FS_PATH_RINGBUF_PAGES") * PAGE_SIZE
            self._reader = RingReader(
                ring.map_fd, size, self._datapath.config.caplen, hop_dtype(self._datapath.config.caplen)
            )
        return self._reader

    def close(self) -> None:
        with self._lock:
            self._active = 0
            if self._attached:
                self._detach()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _attach(self) -> None:
        for tracepoint, program in TRACEPOINTS.items():
            self._bpf.attach_raw_tracepoint(tp=_raw(tracepoint), fn_name=program.encode())
        self._attached = True
        log.info("packet-path sessions: following packets through %s", ", ".join(TRACEPOINTS))

    def _detach(self) -> None:
        for tracepoint in TRACEPOINTS:
            with contextlib.suppress(Exception):
                self._bpf.detach_raw_tracepoint(tp=_raw(tracepoint))
        self._attached = False


def _raw(tracepoint: str) -> bytes:
    """A raw tracepoint is named without its category: net:net_dev_queue is net_dev_queue."""
    return tracepoint.partition(":")[2].encode()
