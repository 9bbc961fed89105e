"""The flow ring: sequence numbers, wrap-around, overrun accounting, waiting."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from flowscope.observer.events import event_dtype
from flowscope.observer.flow_ring import FlowRing, check_capacity

DTYPE = event_dtype()


def batch(first: int, count: int) -> np.ndarray:
    records = np.zeros(count, dtype=DTYPE)
    records["ts"] = np.arange(first, first + count)
    return records


def test_capacity_must_be_power_of_two_minus_one() -> None:
    check_capacity(65535)
    check_capacity(1)
    for bad in (0, 2, 100, 65536):
        with pytest.raises(ValueError, match="2\\^n-1"):
            check_capacity(bad)


def test_reads_back_what_was_written_across_the_wrap() -> None:
    ring = FlowRing(7, DTYPE)
    ring.write(batch(0, 5))
    ring.write(batch(5, 6))  # 11 written, capacity 7: 4..10 remain
    assert (ring.written, ring.oldest, len(ring)) == (11, 4, 7)
    chunk = ring.read(0, 11)
    assert chunk.lost == 4
    assert chunk.first_seq == 4
    assert list(chunk.records["ts"]) == list(range(4, 11))
    assert chunk.end_seq == 11


def test_a_batch_larger_than_the_ring_keeps_the_newest() -> None:
    ring = FlowRing(3, DTYPE)
    ring.write(batch(0, 10))
    chunk = ring.read(0, 10)
    assert (chunk.first_seq, chunk.lost, list(chunk.records["ts"])) == (7, 7, [7, 8, 9])


def test_a_reader_lapped_by_more_than_a_read_counts_every_record_it_missed() -> None:
    """A follower reading a chunk at a time from far behind: each read counts its own part as lost and says
    where to go on from, so the counts add up to exactly what was overwritten (it once jumped to the oldest
    record after counting one chunk: the rest of the lap was lost without a LostEvent)."""
    ring = FlowRing(7, DTYPE)
    ring.write(batch(0, 30))  # 23..29 remain
    pos, lost, seen = 0, 0, []
    while pos < ring.written:
        chunk = ring.read(pos, pos + 4)
        lost += chunk.lost
        seen += list(chunk.records["ts"])
        pos = chunk.end_seq if len(chunk.records) else chunk.first_seq
    assert (lost, seen) == (23, list(range(23, 30)))


def test_reading_past_the_end_is_clipped() -> None:
    ring = FlowRing(15, DTYPE)
    ring.write(batch(0, 3))
    chunk = ring.read(1, 100)
    assert list(chunk.records["ts"]) == [1, 2]
    assert ring.read(3, 10).records.size == 0


def test_column_is_oldest_first() -> None:
    ring = FlowRing(3, DTYPE)
    ring.write(batch(0, 5))
    assert list(ring.column("ts")) == [2, 3, 4]


def test_wait_wakes_on_write() -> None:
    ring = FlowRing(7, DTYPE)
    assert not ring.wait(0, 0.01)
    threading.Timer(0.05, ring.write, args=(batch(0, 1),)).start()
    assert ring.wait(0, 2.0)


def test_concurrent_reader_never_sees_torn_records() -> None:
    """While a writer laps the ring, every record a reader gets is the one its sequence number names."""
    ring = FlowRing(255, DTYPE)
    done = threading.Event()

    def writer() -> None:
        seq = 0
        while not done.is_set():
            ring.write(batch(seq, 100))
            seq += 100

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        pos = 0
        for _ in range(2000):
            chunk = ring.read(pos, pos + 64)
            assert np.array_equal(chunk.records["ts"], np.arange(chunk.first_seq, chunk.end_seq, dtype=np.uint64))
            pos = chunk.end_seq
    finally:
        done.set()
        thread.join()
