"""The decoder's cost per flow stays in its budget (about 12 us here; the bound leaves room for a busy CI)."""

from __future__ import annotations

import time

from records import ACK, SYN, batch_of, lab_registry, record, tcp4, udp4

from flowscope.observer.parser import FlowDecoder

BUDGET_US = 60


def test_decoding_cost_per_flow() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"speed")
    records = batch_of(record(tcp4(flags=SYN)), record(tcp4(flags=SYN | ACK)), record(udp4()))
    rounds = 1000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(rounds):
            decoder.decode(records[i % 3], i)
        best = min(best, (time.perf_counter() - start) / rounds * 1e6)
    assert best < BUDGET_US, f"{best:.1f} us per flow"
