"""The L7 store: entries by sequence number, the oldest overwritten when full, and what it costs in memory."""

from __future__ import annotations

import tracemalloc

import pytest

from flowscope.api.flow import flow_pb2
from flowscope.observer.l7.store import DEFAULT_CAPACITY, L7Entry, L7Store


def entry(n: int) -> L7Entry:
    return L7Entry(layer7=b"x%d" % n, summary=f"entry {n}", kind="http", l7_type=1, http_method="GET")


def test_sequence_numbers_start_at_one_and_find_their_entries() -> None:
    store = L7Store(4)
    assert store.get(0) is None and store.get(1) is None
    seqs = [store.add(entry(n)) for n in range(3)]
    assert seqs == [1, 2, 3]
    assert [store.get(seq) for seq in seqs] == [entry(0), entry(1), entry(2)]
    assert store.get(4) is None
    assert len(store) == 3


def test_a_full_store_overwrites_the_oldest_and_forgets_it() -> None:
    store = L7Store(3)
    for n in range(5):
        store.add(entry(n))
    assert store.get(1) is None and store.get(2) is None
    assert [store.get(seq) for seq in (3, 4, 5)] == [entry(2), entry(3), entry(4)]
    assert store.evicted == 2
    assert len(store) == 3


def test_a_store_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        L7Store(0)


def typical(n: int) -> L7Entry:
    """An HTTP response as the source stores it: a Layer7 message with a URL, and its Summary."""
    url = f"http://web.web.svc.lab/status/{200 + n % 300}?HUBBLE_REDACTED"
    layer7 = flow_pb2.Layer7(
        type=flow_pb2.RESPONSE,
        latency_ns=1_234_567 + n,
        http=flow_pb2.HTTP(code=200, method="GET", url=url, protocol="HTTP/1.1"),
    )
    return L7Entry(
        layer7=layer7.SerializeToString(),
        summary=f"HTTP/1.1 200 1ms (GET {url})",
        kind="http",
        l7_type=2,
        http_code=200,
        http_method="GET",
        http_url=url,
        http_path=f"/status/{200 + n % 300}",
    )


def test_memory_bytes_follows_what_tracemalloc_measures() -> None:
    """The module docstring's figure: a full default store of typical entries, measured, against the estimate."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = L7Store()
        for n in range(DEFAULT_CAPACITY):
            store.add(typical(n))
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = store.memory_bytes()
    assert 0.9 * measured <= estimate <= 1.15 * measured, (measured, estimate)
    assert measured < 12 * 1024 * 1024  # the docstring says about 11 MB for a full store


def test_memory_bytes_stays_flat_once_full() -> None:
    store = L7Store(100)
    for n in range(100):
        store.add(typical(n))
    full = store.memory_bytes()
    for n in range(100, 1000):
        store.add(typical(n))
    assert abs(store.memory_bytes() - full) < 0.05 * full
