"""The datapath's cheap clock: the kernel's tick count, converted to CLOCK_MONOTONIC with figures measured here.

Why: the conntrack bookkeeping of every packet needs the time (expiry, report interval), and reading a clock
helper costs a packet 25-30 ns of its ~200 (bench/stage_cost.py), where bpf_jiffies64() is a load. The tick
(1e9 / HZ ns) is not known to a BPF program, and jiffies start 300 s before zero by design; so the agent reads
both, together, in the datapath's clock_sample program every few ms for a tenth of a second, takes HZ as the
known value nearest to what it saw, and the offset that makes jiffies * tick + offset the monotonic clock at
the moment of a tick: the smallest (monotonic - jiffies * tick) seen, so that the converted clock is mostly
behind, and always within a tick, like the coarse clock it stands in for (the bookkeeping takes a time a
little "in the future" of another as no time gone by). The kernel advances jiffies from the same
clock, so the two do not drift apart.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from flowscope.observer.datapath.testrun import prog_test_run

ETH_HLEN = 14
KNOWN_HZ = (100, 250, 300, 1000)  # the values CONFIG_HZ can take
_SAMPLE = struct.Struct("<QQ")  # struct fs_clock_sample


@dataclass(frozen=True)
class JiffiesClock:
    jiffy_ns: int
    offset_ns: int  # as a u64: CLOCK_MONOTONIC = jiffies * jiffy_ns + offset_ns, mod 2**64


def sample(prog_fd: int) -> tuple[int, int]:
    """(jiffies, CLOCK_MONOTONIC ns), read together by clock_sample."""
    out = prog_test_run(prog_fd, bytes(ETH_HLEN + _SAMPLE.size)).data_out
    jiffies, monotonic_ns = _SAMPLE.unpack_from(out, ETH_HLEN)
    return jiffies, monotonic_ns


def measure(prog_fd: int, span_s: float = 0.1, every_s: float = 0.003) -> JiffiesClock:
    samples = [sample(prog_fd)]
    while samples[-1][1] - samples[0][1] < span_s * 1e9:
        time.sleep(every_s)
        samples.append(sample(prog_fd))
    (j0, t0), (j1, t1) = samples[0], samples[-1]
    hz_seen = (j1 - j0) * 1e9 / (t1 - t0)
    hz = min(KNOWN_HZ, key=lambda known: abs(known - hz_seen))
    jiffy_ns = (1_000_000_000 + hz // 2) // hz  # the kernel's TICK_NSEC
    offset = min(t - j * jiffy_ns for j, t in samples)
    return JiffiesClock(jiffy_ns, offset % 2**64)
