"""The merge: time order across nodes, a watermark that releases early, a window that bounds every hold,
exact merging of histories, late flows, and a slow client's LostEvents."""

from __future__ import annotations

import threading
import time

from relay_samples import MS, T0, FakeClock, parse, raw, time_of

from flowscope.api.flow import flow_pb2
from flowscope.relay.merge import FIRST_S, QUIET_S, Merger

PAST = time.time_ns() - 60_000 * MS  # for tests on the real clock: history, a minute old


def merger(clock: FakeClock, **kwargs: object) -> Merger:
    return Merger(relay_name="relay", window_s=0.05, clock=clock, **kwargs)  # type: ignore[arg-type]


def taken(m: Merger) -> list[tuple[str, int]]:
    """(node, ms after T0) of everything ready now."""
    out = []
    for data in m.take(0) or []:
        response = parse(data)
        out.append((response.node_name, (time_of(response) - T0) // MS))
    return out


def test_a_flow_goes_out_at_once_when_every_node_has_passed_its_time() -> None:
    clock = FakeClock(wall=T0 + 100 * MS)
    m = merger(clock)
    m.open("a", history=False)
    m.open("b", history=False)
    m.push("a", T0 + 90 * MS, raw("a", T0 + 90 * MS))
    assert taken(m) == []  # b might still send something older
    m.push("b", T0 + 95 * MS, raw("b", T0 + 95 * MS))
    assert taken(m) == [("a", 90)]  # b passed 90: a's flow is safe; b's own waits for a
    m.push("a", T0 + 99 * MS, raw("a", T0 + 99 * MS))
    assert taken(m) == [("b", 95)]


def test_an_idle_node_holds_the_others_back_no_longer_than_the_window() -> None:
    clock = FakeClock(wall=T0)
    m = merger(clock)
    m.open("busy", history=False)
    m.open("idle", history=False)
    m.push("busy", T0, raw("busy", T0))
    clock.advance(49)
    assert taken(m) == []
    clock.advance(1)
    assert taken(m) == [("busy", 0)]


def test_the_hold_follows_how_late_a_node_delivers_not_the_whole_window() -> None:
    """A node whose flows arrive 2 ms after they happen is waited for 2 ms (+5 ms slack), not 50."""
    clock = FakeClock(wall=T0)
    m = merger(clock)
    m.open("a", history=False)
    m.open("b", history=False)
    for _ in range(5):  # both nodes deliver with a 2 ms delay: their lag is learnt
        clock.advance(10)
        m.push("a", clock.wall - 2 * MS, raw("a", clock.wall - 2 * MS))
        m.push("b", clock.wall - 2 * MS, raw("b", clock.wall - 2 * MS))
    taken(m)
    clock.advance(10)
    m.push("a", clock.wall - 2 * MS, raw("a", clock.wall - 2 * MS))  # b says nothing now
    clock.advance(4)
    assert taken(m) == []
    clock.advance(2)  # 2 ms lag + 5 ms slack after the flow's time
    assert [node for node, _ in taken(m)] == ["a"]


def test_a_flow_waits_for_each_node_in_turn_as_the_one_holding_it_back_moves_on() -> None:
    """The merge remembers which node held the watermark down and asks it first; once that node has passed
    the flow, the next slowest one still holds it back, to the millisecond."""
    clock = FakeClock(wall=T0)
    m = merger(clock)
    for node in ("a", "b", "c"):
        m.open(node, history=False)
    for node, late in (("b", 40), ("c", 20), ("a", 0)):  # b's flows arrive 40 ms late, c's 20 ms
        m.push(node, T0 - late * MS, raw(node, T0 - late * MS))
    clock.advance(60)
    assert [node for node, _ in taken(m)] == ["b", "c", "a"]
    m.push("a", T0 + 60 * MS, raw("a", T0 + 60 * MS))
    clock.advance(10)
    assert taken(m) == []  # b (45 ms hold) has not passed 60
    m.push("b", T0 + 61 * MS, raw("b", T0 + 61 * MS))
    assert taken(m) == []  # b has, but c (25 ms hold) has not
    clock.advance(14)
    assert taken(m) == []
    clock.advance(1)
    assert taken(m) == [("a", 60)]
    clock.advance(1)
    assert taken(m) == [("b", 61)]


def test_no_flow_is_held_longer_than_the_window_after_it_arrived() -> None:
    """Even a flow stamped in the future (a node's clock ahead) goes out one window after it came."""
    clock = FakeClock(wall=T0)
    m = merger(clock)
    m.open("a", history=False)
    m.open("b", history=False)
    m.push("a", T0 + 10_000 * MS, raw("a", T0 + 10_000 * MS))
    clock.advance(49)
    assert taken(m) == []
    clock.advance(1)
    assert taken(m) == [("a", 10_000)]


def test_streams_merge_in_time_order() -> None:
    clock = FakeClock(wall=T0)
    m = merger(clock)
    nodes = ["n1", "n2", "n3"]
    for node in nodes:
        m.open(node, history=False)
    out: list[tuple[str, int]] = []
    for step in range(100):
        clock.advance(1)
        for k, node in enumerate(nodes):
            if (step + k) % 3 == 0:  # each node sends every third ms, a few ms late, in its own order
                t = clock.wall - (2 + k) * MS
                m.push(node, t, raw(node, t))
        out += taken(m)
    clock.advance(100)
    out += taken(m)
    times = [t for _, t in out]
    assert len(out) == 100 and times == sorted(times)
    assert m.stats.late == 0


def test_histories_merge_exactly_however_late_a_node_starts() -> None:
    """`--last N`: one node answers at once, another 0.5 s later; the merge still interleaves them."""
    clock = FakeClock(wall=T0 + 60_000 * MS)
    m = merger(clock)
    m.open("fast", history=True, ends=True)
    m.open("slow", history=True, ends=True)
    for i in range(0, 10, 2):
        m.push("fast", T0 + i * MS, raw("fast", T0 + i * MS))
    m.close("fast")
    clock.advance(500)
    assert taken(m) == []
    for i in range(1, 10, 2):
        m.push("slow", T0 + i * MS, raw("slow", T0 + i * MS))
    m.close("slow")
    m.finish()
    assert [t for _, t in taken(m)] == list(range(10))
    assert m.take(0) is None  # over


def test_a_follow_node_without_history_stops_holding_the_others_after_a_while() -> None:
    clock = FakeClock(wall=T0 + 60_000 * MS)
    m = merger(clock)
    m.open("a", history=True)
    m.open("silent", history=True)
    m.push("a", T0, raw("a", T0))
    clock.advance(FIRST_S * 1000 - 1)
    assert taken(m) == []
    clock.advance(1)
    assert taken(m) == [("a", 0)]
    assert QUIET_S < FIRST_S


def test_a_late_flow_goes_out_at_once_and_is_counted() -> None:
    clock = FakeClock(wall=T0 + 100 * MS)
    m = merger(clock)
    m.open("a", history=False)
    m.push("a", T0 + 100 * MS, raw("a", T0 + 100 * MS))
    assert taken(m) == [("a", 100)]
    m.open("b", history=False)  # a node that reconnects and catches up
    m.push("b", T0 + 20 * MS, raw("b", T0 + 20 * MS))
    assert taken(m) == [("b", 20)]
    assert m.stats.late == 1


def test_announcements_go_out_ahead_of_held_flows() -> None:
    clock = FakeClock(wall=T0)
    m = merger(clock)
    m.open("a", history=False)
    m.open("b", history=False)
    m.push("a", T0, raw("a", T0))
    m.announce(b"status")
    assert m.take(0) == [b"status"]


def test_a_slow_client_gets_a_lost_event_where_the_gap_is() -> None:
    clock = FakeClock(wall=T0)
    dropped: list[int] = []
    m = merger(clock, client_buffer=3, on_drop=dropped.append)
    m.open("a", history=False)
    for i in range(10):
        m.push("a", T0 + i * MS, raw("a", T0 + i * MS))
    clock.advance(100)
    out = [parse(d) for d in m.take(0) or []]
    kinds = [r.WhichOneof("response_types") for r in out]
    assert kinds == ["flow", "flow", "flow", "lost_events"]
    lost = out[3].lost_events
    assert lost.num_events_lost == 7 and lost.source == flow_pb2.OBSERVER_EVENTS_QUEUE
    assert (lost.first.ToNanoseconds() - T0) // MS == 3 and (lost.last.ToNanoseconds() - T0) // MS == 9
    assert out[3].node_name == "relay"
    assert m.stats.dropped == 7 and sum(dropped) == 7
    m.push("a", T0 + 200 * MS, raw("a", T0 + 200 * MS))
    clock.advance(100)
    assert taken(m) == [("a", 200)]  # after the gap, the stream goes on


def test_history_is_never_dropped_for_a_slow_client_its_node_waits_instead() -> None:
    m = Merger(relay_name="relay", window_s=0.05, client_buffer=2)  # the real clock: push blocks for real
    m.open("a", history=True, ends=True)
    pushed = threading.Event()

    def send() -> None:
        for i in range(6):
            m.push("a", PAST + i * MS, raw("a", PAST + i * MS))
        m.close("a")
        pushed.set()

    threading.Thread(target=send, daemon=True).start()
    time.sleep(0.3)
    assert not pushed.is_set()  # waiting for the client to take some
    m.finish()
    out: list[bytes] = []
    deadline = time.monotonic() + 5
    while (batch := m.take(0.1)) is not None and time.monotonic() < deadline:
        out += batch
    assert [(time_of(parse(d)) - PAST) // MS for d in out] == list(range(6))
    assert m.stats.dropped == 0


def test_a_node_holding_too_much_back_waits_for_the_others() -> None:
    m = Merger(relay_name="relay", window_s=0.05, held_per_node=3)
    m.open("a", history=True, ends=True)
    m.open("b", history=True, ends=True)
    done = threading.Event()

    def send_a() -> None:
        for i in range(10, 20):
            m.push("a", PAST + i * MS, raw("a", PAST + i * MS))
        m.close("a")
        done.set()

    threading.Thread(target=send_a, daemon=True).start()
    time.sleep(0.2)
    assert not done.is_set()  # a holds 3 flows that wait for b
    for i in range(0, 30, 2):
        m.push("b", PAST + i * MS, raw("b", PAST + i * MS))
    assert done.wait(2)
    m.close("b")
    m.finish()
    out: list[bytes] = []
    while (batch := m.take(0.1)) is not None:
        out += batch
    times = [time_of(parse(d)) for d in out]
    assert times == sorted(times) and len(times) == 25


def test_a_flow_pushed_while_the_handler_sleeps_goes_out_when_due_not_when_the_handler_looks_again() -> None:
    """An idle stream's handler sleeps up to its timeout; a flow pushed meanwhile must not wait for that."""
    m = Merger(relay_name="relay", window_s=0.05)  # the real clock
    m.open("a", history=False)
    m.open("b", history=False)  # idle: a's flow waits for it one window at most
    received: list[float] = []
    handler = threading.Thread(target=lambda: received.append(time.monotonic()) if m.take(5.0) else None)
    handler.start()
    deadline = time.monotonic() + 5
    while not m._taker_waiting and time.monotonic() < deadline:  # the handler is asleep in take()
        time.sleep(0.001)
    pushed = time.monotonic()
    m.push("a", time.time_ns(), raw("a", time.time_ns()))
    handler.join(10)
    assert received and received[0] - pushed < 1.0  # one window (50 ms) and scheduling; not the 5 s timeout


def taking_client(m: Merger) -> None:
    """The client's handler has just taken something: from now on it counts as reading."""
    m.announce(b"start")
    assert m.take(0) == [b"start"]


def test_live_flows_wait_for_a_client_that_is_taking_and_none_is_lost() -> None:
    """Back-pressure: a live node's stream stops while the client's buffer is full and the client is reading it,
    so the relay reads no more than its client takes (the node's agent then reports what it missed)."""
    m = Merger(relay_name="relay", window_s=0.01, client_buffer=4, taker_stall_s=30.0)  # the real clock
    m.open("a", history=False)
    taking_client(m)
    pushed = threading.Event()
    start = time.time_ns()

    def send() -> None:
        for i in range(40):
            m.push("a", start + i * MS, raw("a", start + i * MS))
        pushed.set()

    threading.Thread(target=send, daemon=True).start()
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(out) < 40 and time.monotonic() < deadline:
        out += m.take(0.1) or []
    assert pushed.wait(30)
    assert [(time_of(parse(d)) - start) // MS for d in out] == list(range(40))  # no LostEvent among them
    assert m.stats.dropped == 0


def test_once_the_client_stops_taking_live_flows_are_dropped_and_the_node_goes_on() -> None:
    m = Merger(relay_name="relay", window_s=0.01, client_buffer=3, taker_stall_s=0.2)  # the real clock
    m.open("a", history=False)
    taking_client(m)
    pushed = threading.Event()
    start = time.time_ns()

    def send() -> None:
        for i in range(20):
            m.push("a", start + i * MS, raw("a", start + i * MS))
        pushed.set()

    threading.Thread(target=send, daemon=True).start()
    assert pushed.wait(30)  # it waited for room a while, then no longer: the client took nothing for 0.2 s
    out = [parse(d) for d in m.take(0) or []]
    kinds = [r.WhichOneof("response_types") for r in out]
    assert kinds[:3] == ["flow", "flow", "flow"] and kinds[-1] == "lost_events" and m.stats.dropped > 0
    flows = sum(kind == "flow" for kind in kinds)
    assert flows + out[-1].lost_events.num_events_lost == 20  # every flow went out or is counted lost
