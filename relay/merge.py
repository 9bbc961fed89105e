"""The time-ordered merge of node streams: a bounded reordering window and a watermark.

Each node sends its flows nearly in time order, each a little late (its agent reads the kernel every 20 ms).
A flow may go to the client once no node can still send an earlier one: once it is at or below the
*watermark*, the smallest of the nodes' *bounds*, where a node's bound is the time below which nothing more
will come from it:

- a node sending its history (`--last N`, `--since`) is bounded by the last flow it sent: the merge of
  histories is exact. It counts as live once it sends a flow of the last window, or has been quiet for a
  while: QUIET_S between flows of a follow stream (history sent, nothing new), FIRST_S before its first
  one (finding `--last N` in a full ring takes a moment), STALL_S for a stream that will end by itself;
- a live node is bounded by its last flow, or by `now - hold`, whichever is later, where `hold` is the delay
  its flows arrive with (the largest of the last second or two, plus a little), never more than the window:
  an idle node holds the others back only that long;
- a node whose stream ended or broke does not hold anything back.

Whatever the watermark says, once every node is live no flow is held longer than the window after it
arrived (Hubble holds flows up to a second; flowscope's default window is 50 ms). A flow that arrives after
later ones went out (a node that reconnects and catches up, a clock that jumps) goes out at once and is
counted as late: out of order, but never held.

Two bounds keep memory in check. History is never dropped: a node sending it waits (its gRPC stream stops,
so its agent pauses) while it holds many flows back for the others, or while the client has a full buffer
of responses not taken yet. Live flows wait the same way while the client is taking (it came for more within
TAKER_STALL_S): the relay then reads its nodes only as fast as the client reads it, TCP holds each agent's
sender, and what an agent's ring overwrites meanwhile reaches the client as that agent's LostEvent, forwarded
like a flow. Reading on and dropping instead would spend the relay's CPU on flows nobody gets: 50 node
readers always runnable crowd out the one thread sending to the client. Once the client stops taking (its
handler blocked in a send for TAKER_STALL_S), live flows are no longer waited for: past the client buffer
they are dropped, counted, and the client gets a LostEvent where the gap is, so a client that reads nothing
never stalls its node streams for long (an agent ends a stream whose sends waited 30 s).

Pushers that wait for room are woken once the client buffer is down to half, one at a time, in the order
they began to wait: each passes the turn on when it has pushed its read and room is left. 50 node threads
woken together for every batch taken would be 50 threads runnable at once, the crowd that starves the sender.

The watermark is a look at every node (~10 µs with 50), and a quiet stream looks for a release at every flow
it pushes and every time the handler wakes. Once every node is live, a look at the node that held the
watermark down last time (the *blocker*) mostly answers: while its bound is below the earliest held flow,
nothing can go, whatever the others say.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from flowscope.relay import wire

WINDOW_S = 0.05
QUIET_S = 0.25
FIRST_S = 1.0
STALL_S = 2.0
SLACK_NS = 5_000_000
HELD_PER_NODE = 8192
CLIENT_BUFFER = 8192
BATCH = 512
RELEASE_EVERY = 64  # pushes between two releases while the handler is busy sending
TAKER_STALL_S = 1.0  # a client whose handler has not come for more in this long is not waited for
ROOM_CHECK_S = 0.1  # how often a pusher waiting for room looks at whether its stream or the client stopped
_LAG_BUCKET_S = 1.0
_EPSILON_S = 1e-9  # times compared in float seconds: a window of 50 ms is over at 49.999999999 ms
_NEVER = -(1 << 62)
_ALWAYS = 1 << 62

Clock = Callable[[], tuple[int, float]]  # (wall clock ns, monotonic s)


def system_clock() -> tuple[int, float]:
    return time.time_ns(), time.monotonic()


@dataclass
class _Node:
    live: bool
    ends: bool = False  # a stream without follow: it ends by itself once its history is sent
    last_ts: int = _NEVER
    last_arrival: float = 0.0
    held: int = 0
    lag_ns: int | None = None  # how late its flows arrive: the largest of the current and previous bucket
    _bucket_start: float = 0.0
    _bucket_max: int = 0
    _previous_max: int = 0

    @property
    def droppable(self) -> bool:
        """Live flows of a follow stream may be dropped for a slow client; history may not."""
        return self.live and not self.ends

    def quiet_limit(self) -> float:
        """How long the node may be silent while sending its history before the merge stops waiting for it."""
        if self.ends:
            return STALL_S
        return QUIET_S if self.last_ts != _NEVER else FIRST_S

    def observe_lag(self, lag_ns: int, now: float) -> None:
        if now - self._bucket_start >= _LAG_BUCKET_S:
            recent = now - self._bucket_start < 2 * _LAG_BUCKET_S
            self._previous_max = self._bucket_max if recent else 0
            self._bucket_start, self._bucket_max = now, 0
        self._bucket_max = max(self._bucket_max, lag_ns)
        self.lag_ns = max(self._bucket_max, self._previous_max)


@dataclass
class _Gap:
    """Responses dropped at this point of the stream because the client fell behind."""

    count: int
    first_ns: int
    last_ns: int


@dataclass
class MergeStats:
    merged: int = 0  # responses handed to the client
    late: int = 0  # of them, how many arrived after later ones had gone out
    dropped: int = 0  # responses dropped because the client did not keep up
    lost_events: int = 0  # LostEvent responses made where dropped ones were


@dataclass
class Merger:
    """Merges the streams of one GetFlows request; thread-safe (node readers push, the handler takes)."""

    relay_name: str = "relay"
    window_s: float = WINDOW_S
    client_buffer: int = CLIENT_BUFFER
    held_per_node: int = HELD_PER_NODE
    clock: Clock = system_clock
    on_drop: Callable[[int], None] = lambda count: None
    stats: MergeStats = field(default_factory=MergeStats)
    taker_stall_s: float = TAKER_STALL_S

    def __post_init__(self) -> None:
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the handler waiting for flows; pushers waiting for held ones
        self._room = threading.Condition(lock)  # pushers waiting for room in the client buffer
        self._nodes: dict[str, _Node] = {}
        self._heap: list[tuple[int, int, str, bytes, bool]] = []  # (time, seq, node, response, droppable)
        self._arrivals: deque[tuple[float, int]] = deque()  # (arrival, ts) of held flows, oldest first
        self._ready: deque[bytes | _Gap] = deque()
        self._seq = 0
        self._unreleased = 0  # pushes since the last release
        self._released_ts = _NEVER
        self._finished = False
        self._taker_waiting = False
        self._pushers_waiting = 0  # waiting for their held flows to go
        self._room_waiting = 0  # waiting for room in the client buffer
        self._taken_at = float("-inf")  # when the handler last came for more (monotonic)
        self._resume = self.client_buffer // 2  # room-waiters go on once the client buffer is down to this
        self._window_ns = int(self.window_s * 1e9)
        self._all_live = False  # every node was live at the last look at all of them (and none opened since)
        self._blocker = ""  # the node whose bound was the watermark then
        self._release_every = max(1, min(RELEASE_EVERY, self.client_buffer))  # a small buffer fills as before

    # --- the node side -----------------------------------------------------------------------------------

    def open(self, node: str, history: bool, ends: bool = False) -> None:
        """A node's stream starts; with `history` it first sends stored flows, oldest first; a stream that
        `ends` (no follow) finishes by itself after them."""
        with self._cond:
            _, now = self.clock()
            self._nodes[node] = _Node(live=not history, ends=ends, last_arrival=now)
            self._all_live = False

    def close(self, node: str) -> None:
        """A node's stream ended or broke: it holds nothing back any more (held flows stay held)."""
        with self._cond:
            self._nodes.pop(node, None)
            self._release(*self.clock())
            self._cond.notify_all()
            self._room.notify_all()

    def push(self, node: str, time_ns: int, raw: bytes, cancelled: Callable[[], bool] = lambda: False) -> None:
        """One response from a node's stream; waits while that node holds too many flows back."""
        self.push_many(node, [(time_ns, raw)], cancelled)

    def push_many(
        self, node: str, flows: list[tuple[int, bytes]], cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        """Responses (time, bytes) of one read from a node's stream, in their order, under one hold of the lock
        and one reading of the clock (they arrived together); waits while that node holds too many back.

        Held flows are let go in batches (`_release`), not at every push: when the handler is asleep waiting
        for something to send, at every RELEASE_EVERY-th push, and by the handler itself when it comes back
        for more. A push is then a heap insertion and a little bookkeeping, most of the relay's own cost.
        """
        with self._cond:
            wall, now = self.clock()
            for time_ns, raw in flows:
                state = self._nodes.get(node)
                if state is not None and self._must_wait(state):
                    state = self._wait_for_room(node, cancelled)
                    wall, now = self.clock()
                if state is None:  # closed meanwhile: the flow still goes out, in order if it can
                    state = _Node(live=True)
                state.last_arrival = now
                if time_ns > state.last_ts:
                    state.last_ts = time_ns
                if not state.live and time_ns >= wall - self._window_ns:
                    state.live = True  # caught up with the present
                if state.live:
                    state.observe_lag(wall - time_ns if wall > time_ns else 0, now)
                self._seq += 1
                heapq.heappush(self._heap, (time_ns, self._seq, node, raw, state.droppable))
                self._arrivals.append((now, time_ns))
                state.held += 1
                self._unreleased += 1
                if self._taker_waiting or self._unreleased >= self._release_every:
                    earliest = self._heap[0][1] == self._seq  # the handler's sleep was planned without this flow
                    self._release(wall, now)
                    self._wake(replan=earliest)
            if self._room_waiting and len(self._ready) < self.client_buffer:
                self._room.notify()  # room left after this node's read: the next node waiting may go on

    def _wait_for_room(self, node: str, cancelled: Callable[[], bool]) -> _Node | None:
        """Wait (the lock held) until the node may push again; its state, or None once it closed."""
        self._release(*self.clock())
        state = self._nodes.get(node)
        while state is not None and not cancelled() and self._must_wait(state):
            if state.held >= self.held_per_node:
                self._pushers_waiting += 1
                self._cond.wait(ROOM_CHECK_S)
                self._pushers_waiting -= 1
            else:
                self._room_waiting += 1
                self._room.wait(ROOM_CHECK_S)
                self._room_waiting -= 1
            self._release(*self.clock())
            state = self._nodes.get(node)
        return state

    def _wake(self, replan: bool = False) -> None:
        """Wake the client's handler only when it waits for something that is now there, or (`replan`) for a
        held flow due before it planned to wake up (an idle stream's handler sleeps up to TAKE_S), and pushers
        waiting for room: a thread woken for every flow costs more than the flow (a context switch each)."""
        if (self._taker_waiting and (self._ready or replan)) or self._pushers_waiting:
            self._cond.notify_all()

    def _must_wait(self, state: _Node) -> bool:
        if state.held >= self.held_per_node:
            return True
        if len(self._ready) < self.client_buffer:
            return False
        return not state.droppable or self._client_taking(self.clock()[1])

    def _client_taking(self, now: float) -> bool:
        """Whether the client's handler came for more lately: live flows then wait for room too."""
        return self._taker_waiting or now - self._taken_at < self.taker_stall_s

    def announce(self, raw: bytes) -> None:
        """A response that goes out next, ahead of held flows (node status changes)."""
        with self._cond:
            self._ready.append(raw)
            self._cond.notify_all()

    def finish(self) -> None:
        """No stream will open any more: once the open ones end and all is sent, the merge is over."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()
            self._room.notify_all()

    # --- the client side ---------------------------------------------------------------------------------

    def client_reading(self) -> None:
        """The client's handler is about to take: live flows wait for it from now on, while it keeps coming back
        (the node streams start before its first take, and 50 of them fill the buffer before it gets there)."""
        with self._cond:
            self._taken_at = self.clock()[1]

    def take(self, timeout: float) -> list[bytes] | None:
        """Responses ready to send, oldest first, waiting up to `timeout`; None once the merge is over."""
        with self._cond:
            deadline = self.clock()[1] + timeout
            while True:
                wall, now = self.clock()
                self._release(wall, now)
                if self._ready:
                    out = self._pop_ready()
                    self._taken_at = now
                    if self._room_waiting and len(self._ready) <= self._resume:
                        self._room.notify()  # one; it passes the turn on while there is room
                    if self._pushers_waiting:  # their held flows may have gone out just now
                        self._cond.notify_all()
                    return out
                if self._finished and not self._nodes and not self._heap:
                    return None
                if now >= deadline:
                    return []
                self._taker_waiting = True
                self._cond.wait(min(deadline - now, self._next_due(wall, now)))
                self._taker_waiting = False

    def _pop_ready(self) -> list[bytes]:
        out: list[bytes] = []
        while self._ready and len(out) < BATCH:
            item = self._ready.popleft()
            if isinstance(item, _Gap):
                self.stats.lost_events += 1
                out.append(wire.lost_events(item.count, item.first_ns, item.last_ns, self.relay_name))
            else:
                out.append(item)
        return out

    # --- the merge ---------------------------------------------------------------------------------------

    def _bound(self, state: _Node, wall: int, now: float) -> int:
        if not state.live and now - state.last_arrival >= state.quiet_limit() - _EPSILON_S:
            state.live = True  # history sent (or the node hangs): stop waiting for it
        if not state.live:
            return state.last_ts
        hold = self._window_ns if state.lag_ns is None else min(self._window_ns, state.lag_ns + SLACK_NS)
        return max(state.last_ts, wall - hold)

    def watermark(self, wall: int, now: float) -> int:
        bound, blocker, live = _ALWAYS, "", True
        for node, state in self._nodes.items():
            node_bound = self._bound(state, wall, now)
            live = live and state.live
            if node_bound < bound:
                bound, blocker = node_bound, node
        self._blocker, self._all_live = blocker, live
        return bound

    def _blocked(self, wall: int, now: float) -> bool:
        """Whether, every node being live, the last blocker still holds the earliest flow back (and no flow has
        been held a whole window): nothing to release, known without looking at every node. A live node's
        bound has no side effect, so skipping the others changes nothing."""
        blocker = self._nodes.get(self._blocker)
        if not self._all_live or blocker is None:
            return False
        arrivals = self._arrivals
        if arrivals and arrivals[0][0] <= now - self.window_s + _EPSILON_S:
            return False
        return self._bound(blocker, wall, now) < self._heap[0][0]

    def _release(self, wall: int, now: float) -> None:
        """Send on every held flow at or below the watermark, or held for a whole window (and all before it)."""
        self._unreleased = 0
        heap = self._heap
        if not heap:
            self._arrivals.clear()
            return
        if self._blocked(wall, now):
            return
        limit = self.watermark(wall, now)
        nodes = self._nodes
        if self._arrivals and self._all_live:
            arrivals, oldest = self._arrivals, now - self.window_s + _EPSILON_S
            while arrivals and arrivals[0][0] <= oldest:
                limit = max(limit, arrivals.popleft()[1])
        if heap[0][0] > limit:
            return
        ready, room, released = self._ready, self.client_buffer - len(self._ready), self._released_ts
        taking = self._client_taking(now)  # live flows past the buffer are kept: their pushers wait next
        late = merged = 0
        while heap and heap[0][0] <= limit:
            time_ns, _, node, raw, droppable = heapq.heappop(heap)
            state = nodes.get(node)
            if state is not None and state.held > 0:
                state.held -= 1
            if time_ns < released:
                late += 1
            else:
                released = time_ns
            if room > 0 or not droppable or taking:
                ready.append(raw)
                room -= 1
                merged += 1
            else:
                self._drop(time_ns)
        self._released_ts = released
        self.stats.late += late
        self.stats.merged += merged

    def _drop(self, time_ns: int) -> None:
        """A live flow the client has no room for: counted into the LostEvent at the end of its buffer."""
        self.stats.dropped += 1
        self.on_drop(1)
        last = self._ready[-1]
        if isinstance(last, _Gap):
            last.count += 1
            last.last_ns = max(last.last_ns, time_ns)
        else:
            self._ready.append(_Gap(1, time_ns, time_ns))

    def _next_due(self, wall: int, now: float) -> float:
        """Seconds until held flows may be due without anything new arriving (how long take() may sleep)."""
        if not self._heap:
            return 1.0
        due = 1.0
        if self._arrivals and self._all_live:  # as _release just found them
            due = self._arrivals[0][0] + self.window_s - now  # the window of the longest-held flow ends
        top = self._heap[0][0]
        waits = []
        for state in self._nodes.values():
            if state.last_ts >= top:
                continue
            if not state.live:
                waits.append(state.last_arrival + state.quiet_limit() - now)
                continue
            hold = self._window_ns if state.lag_ns is None else min(self._window_ns, state.lag_ns + SLACK_NS)
            waits.append((top + hold - wall) / 1e9)
        if waits:
            due = min(due, max(waits))
        return max(0.001, due)
