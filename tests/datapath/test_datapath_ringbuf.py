"""The ring buffer path: a full buffer is counted in `lost` exactly, the reader follows records around the
buffer's end, and a blocked reader is woken by a batch of events."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from dp_packets import ETH_P_IP, IPPROTO_UDP, eth, ipv4, udp

from flowscope.observer.datapath import Datapath, DatapathConfig
from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run
from flowscope.observer.events import HEADER_SIZE, ring_capacity

pytestmark = pytest.mark.bpf

CAPLEN = 64  # not the default, so the reader's dtype and stride follow the compiled FS_CAPLEN
PAGE = 4096


def packet(sport: int) -> bytes:
    return eth(ETH_P_IP, ipv4("192.0.2.1", "192.0.2.2", IPPROTO_UDP, udp(sport, 9, bytes(100))))


@pytest.fixture(scope="module")
def small() -> Iterator[Datapath]:
    """A datapath whose ring buffer is one page: 4096 // 184 = 22 events of caplen 64."""
    with Datapath(DatapathConfig(caplen=CAPLEN, ring_buffer_pages=1)) as dp:
        yield dp


@pytest.fixture
def ring(small: Datapath) -> Datapath:
    small.reader().read_batch(0)
    return small


def emit(dp: Datapath, sport: int, repeat: int = 1) -> None:
    assert prog_test_run(dp.program_fd("from_netdev"), packet(sport), repeat=repeat).retval == TC_ACT_OK


def test_full_ring_counts_exactly_the_excess_in_lost(ring: Datapath) -> None:
    capacity = ring_capacity(PAGE, CAPLEN)
    before = sum(ring.lost_counts())
    emit(ring, 1111, repeat=capacity + 25)
    assert sum(ring.lost_counts()) - before == 25
    batch = ring.reader().read_batch(0)
    assert len(batch) == capacity
    assert set(batch["sport"].tolist()) == {1111}
    assert batch.dtype.itemsize == HEADER_SIZE + CAPLEN
    emit(ring, 2222)  # reading freed the space
    assert sum(ring.lost_counts()) - before == 25
    assert ring.reader().read_batch(0)["sport"].tolist() == [2222]


def test_lost_counts_are_per_cpu(ring: Datapath) -> None:
    assert len(ring.lost_counts()) >= (os.cpu_count() or 1)


def test_reader_follows_records_around_the_end_of_the_buffer(ring: Datapath) -> None:
    """7 events a round through a 22-event buffer: records start at every offset and straddle the end."""
    sent: list[int] = []
    got: list[np.ndarray] = []
    for round_ in range(12):
        for i in range(7):
            sport = 1000 + round_ * 7 + i
            emit(ring, sport)
            sent.append(sport)
        got.append(ring.reader().read_batch(0))
    batch = np.concatenate(got)
    assert batch["sport"].tolist() == sent
    assert all(bytes(e["data"])[: int(e["len_cap"])] == packet(int(e["sport"]))[:CAPLEN] for e in batch)
    assert ring.reader().pending_bytes == 0


def test_read_batch_limits_the_batch(ring: Datapath) -> None:
    for sport in (1, 2, 3):
        emit(ring, sport)
    assert ring.reader().read_batch(0, max_events=2)["sport"].tolist() == [1, 2]
    assert ring.reader().read_batch(0)["sport"].tolist() == [3]


def test_empty_read_waits_for_the_timeout(ring: Datapath) -> None:
    start = time.monotonic()
    assert len(ring.reader().read_batch(0.2)) == 0
    assert time.monotonic() - start >= 0.15


def test_a_batch_of_events_wakes_a_blocked_reader(dp: Datapath) -> None:
    """Every FS_WAKEUP_EVERY-th (64th) event of a CPU forces a wakeup: 64 events per CPU make at least one,
    whatever each CPU's count was before. (`dp` is the module's big-ring datapath: none of them is lost.)"""
    result: list[tuple[float, int]] = []

    def read() -> None:
        start = time.monotonic()
        batch = dp.reader().read_batch(10.0)
        result.append((time.monotonic() - start, len(batch)))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)  # let it block in epoll
    emit(dp, 3333, repeat=64 * (os.cpu_count() or 1))
    reader.join(timeout=15)
    waited, count = result[0]
    assert count > 0
    assert waited < 5.0


def test_reader_drains_millions_of_events_per_second(dp: Datapath) -> None:
    """The vectorised read: ~12 M events/s measured here (tests/datapath/bench_reader.py); 1 M the floor."""
    reader = dp.reader()
    capacity = ring_capacity(reader.data_size, dp.config.caplen)
    total, spent = 0, 0.0
    for _ in range(20):
        emit(dp, 4444, repeat=capacity)
        start = time.perf_counter()
        total += len(reader.read_batch(0))
        spent += time.perf_counter() - start
    assert total == 20 * capacity
    assert total / spent > 1e6
