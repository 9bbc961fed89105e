"""The datapath's bookkeeping clock: the tick count, converted with what the agent measured, is CLOCK_MONOTONIC
within a tick."""

from __future__ import annotations

import time

import pytest

from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.tick_clock import KNOWN_HZ, sample

pytestmark = pytest.mark.bpf


def test_the_converted_tick_count_is_the_monotonic_clock_within_a_tick(loaded: Datapath) -> None:
    clock = loaded.clock
    assert 1_000_000_000 // clock.jiffy_ns in KNOWN_HZ
    assert loaded.maps.read_config().jiffy_ns == clock.jiffy_ns
    for _ in range(25):
        jiffies, monotonic_ns = sample(loaded.program_fd("clock_sample"))
        converted = (jiffies * clock.jiffy_ns + clock.offset_ns) % 2**64
        assert abs(converted - monotonic_ns) < clock.jiffy_ns
        time.sleep(0.007)
