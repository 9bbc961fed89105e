"""Packet-path sessions on one node: their slots in the datapath, their hops, their ends.

A session takes one of the datapath's slots (FS_PATH_SESSIONS_MAX of them) for its life. One reader thread,
running only while some session does, reads the hop ring and hands each hop to its session's queue; a client's
stream takes them from there. A session ends

- by count: it picked `count` packets and the datapath follows none of them any more (each was freed, or left
  the node, or has been quiet for longer than a packet stays in a node);
- by duration;
- when its client goes away (the gRPC callback cancels it) or the agent stops.

What cannot be kept is counted, never dropped silently: hops the datapath's ring had no room for (per slot,
in the kernel) and hops a slow client's queue had no room for; SessionEnded says both together.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from flowscope.api.trace import trace_pb2
from flowscope.observer.datapath.pathtrace import SESSIONS_MAX, PathTracer
from flowscope.observer.trace.hops import HopContext, decode_hop, packet_id, summary

log = logging.getLogger(__name__)

DEFAULT_COUNT = 10
MAX_COUNT = 1000  # packets a session may pick: ~30 hops each fill the agent's queue and the ring's share
DEFAULT_DURATION_S = 30.0
MAX_DURATION_S = 3600.0
QUEUE_MAX = 50_000  # hops waiting for a client
READ_TIMEOUT_S = 0.05
QUIET_NS = 1_000_000_000  # FS_PATH_STALE_NS: a followed packet this quiet is done (trace.h)


class SessionsFull(RuntimeError):
    """Every slot of the datapath is taken."""


@dataclass
class Session:
    id: int
    slot: int
    count: int
    deadline: float  # time.monotonic()
    payload: bool
    filter_text: str
    notes: list[str]
    kernel_hooks: bool
    opened_ns: int = field(default_factory=lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC))  # the kernel's clock
    hops: int = 0
    dropped: int = 0  # hops the queue had no room for
    reason: int = 0  # SessionEnded.Reason once ended
    packets: dict[str, int] = field(default_factory=dict)  # packet id -> hops so far (first `count` only)
    extra_packets: int = 0  # picked past `count` by CPUs racing for the last one: not shown
    last_seen: dict[str, trace_pb2.Hop] = field(default_factory=dict)  # a packet's last hop that said where
    _queue: collections.deque[trace_pb2.Hop] = field(default_factory=collections.deque)
    _ready: threading.Condition = field(default_factory=threading.Condition)

    @property
    def ended(self) -> bool:
        return self.reason != 0

    def put(self, hop: trace_pb2.Hop) -> None:
        with self._ready:
            if len(self._queue) >= QUEUE_MAX:
                self.dropped += 1
                return
            self._queue.append(hop)
            self.hops += 1
            self._ready.notify()

    def end(self, reason: int) -> None:
        with self._ready:
            if not self.reason:
                self.reason = reason
            self._ready.notify_all()

    def hops_until_end(self, poll_s: float = 0.2) -> Iterator[trace_pb2.Hop]:
        """The session's hops as they come, until it has ended and its queue is empty."""
        while True:
            with self._ready:
                while not self._queue and not self.reason:
                    self._ready.wait(poll_s)
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            yield from batch


class SessionManager:
    """The node's sessions and the thread that feeds them."""

    def __init__(self, tracer: PathTracer, context: HopContext) -> None:
        self._tracer = tracer
        self._context = context
        self._sessions: dict[int, Session] = {}  # by slot
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._closed = False

    @property
    def tracer(self) -> PathTracer:
        return self._tracer

    @property
    def kernel_hooks(self) -> bool:
        return self._tracer.kernel_hops

    def open(
        self, terms: bytes, nterms: int, filter_text: str, count: int, duration_s: float, payload: bool
    ) -> Session:
        """Start a session with a compiled filter (observer/trace/filter.py)."""
        notes = []
        if count > MAX_COUNT:
            notes.append(f"count capped at {MAX_COUNT} packets (asked {count}): more does not fit the hop buffers")
            count = MAX_COUNT
        if duration_s > MAX_DURATION_S:
            notes.append(f"duration capped at {MAX_DURATION_S:.0f} s")
            duration_s = MAX_DURATION_S
        if not nterms:
            notes.append(f"no filter: the node's next {count} packets, whatever they are, are followed")
        if not self.kernel_hooks:
            notes.append("no kernel hops: this kernel's BTF did not give the sk_buff layout; tc hops only")
        with self._lock:
            if self._closed:
                raise SessionsFull("the agent is stopping")
            free = [slot for slot in range(SESSIONS_MAX) if slot not in self._sessions]
            if not free:
                raise SessionsFull(f"{SESSIONS_MAX} sessions are running on this node already")
            session = Session(
                id=next(self._ids),
                slot=free[0],
                count=count,
                deadline=time.monotonic() + duration_s,
                payload=payload,
                filter_text=filter_text,
                notes=notes,
                kernel_hooks=self.kernel_hooks,
            )
            self._tracer.start(session.slot, session.id, count, terms, nterms)
            self._sessions[session.slot] = session
            if self._reader is None:
                self._reader = threading.Thread(target=self._run, name="trace-hops", daemon=True)
                self._reader.start()
        log.info("trace session %d: slot %d, %s, %d packets", session.id, session.slot, filter_text, count)
        return session

    def close_session(self, session: Session, reason: int, drain: bool = False) -> trace_pb2.SessionEnded:
        """End a session (if it has not ended) and free its slot; what it picked and lost. Only the reader
        thread reads the ring, so only it asks to `drain` the hops still in it first (a session that ends by
        itself keeps them; one whose client went away has nobody to send them to)."""
        with self._lock:
            if self._sessions.get(session.slot) is session:
                if drain:
                    self._drain()
                state = self._tracer.state(session.slot)
                session.dropped += state.lost
                self._tracer.stop(session.slot)
                del self._sessions[session.slot]
        session.end(reason)
        return trace_pb2.SessionEnded(
            session_id=session.id,
            reason=cast(trace_pb2.SessionEnded.Reason, session.reason),
            packets=len(session.packets),
            hops=session.hops,
            hops_lost=session.dropped,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
        for session in sessions:
            self.close_session(session, trace_pb2.SessionEnded.CANCELLED)
        reader = self._reader
        if reader is not None:
            reader.join(2.0)
        self._tracer.close()

    # the reader thread

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._sessions:
                    self._reader = None
                    return
            try:
                self._read(READ_TIMEOUT_S)
                self._check_ends()
            except Exception:  # keep the other sessions going; say what went wrong
                log.exception("reading packet-path hops failed")
                time.sleep(READ_TIMEOUT_S)

    def _read(self, timeout_s: float) -> None:
        records = self._tracer.reader().read_batch(timeout_s)
        with self._lock:
            for record in records:
                session = self._sessions.get(int(record["session"]))
                if session is not None:
                    self._deliver(session, record)

    def _drain(self) -> None:
        """Deliver the hops already in the ring (the reader thread, with the lock held)."""
        for record in self._tracer.reader().read_batch(0):
            owner = self._sessions.get(int(record["session"]))
            if owner is not None:
                self._deliver(owner, record)

    def _deliver(self, session: Session, record: object) -> None:
        if int(record["first_ts"]) < session.opened_ns:  # type: ignore[index]
            return  # picked for the slot's previous session, whose client went away before it was read
        pid = packet_id(record)  # type: ignore[arg-type]
        index = session.packets.get(pid)
        if index is None:
            if len(session.packets) >= session.count:
                session.extra_packets += 1
                return
            index = 0
        session.packets[pid] = index + 1
        hop = decode_hop(record, index, self._context, session.payload)  # type: ignore[arg-type]
        hop.session_id = session.id
        _place(hop, session.last_seen.get(pid))
        if hop.netns_name:
            session.last_seen[pid] = hop
        session.put(hop)

    def _check_ends(self) -> None:
        now = time.monotonic()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if now >= session.deadline:
                self.close_session(session, trace_pb2.SessionEnded.DURATION, drain=True)
            elif self._tracer.state(session.slot).picked >= session.count and not self._tracer.follows(
                session.slot, QUIET_NS
            ):
                self.close_session(session, trace_pb2.SessionEnded.COUNT, drain=True)


def _place(hop: trace_pb2.Hop, before: trace_pb2.Hop | None) -> None:
    """A kernel hop that could not say where it was is where the packet's hop before it was: net_dev_xmit on the
    device it was queued to (the skb may be the peer's or freed by then), a free without device or socket in the
    namespace it was last seen in."""
    if before is None or hop.kind != trace_pb2.KERNEL:
        return
    if hop.hook == "net:net_dev_xmit":
        hop.ifindex, hop.interface = before.ifindex, before.interface
    if hop.hook == "net:net_dev_xmit" or not hop.netns_name or hop.netns == 0:
        hop.netns, hop.netns_name = before.netns, before.netns_name
        hop.summary = summary(hop)
