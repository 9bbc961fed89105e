"""How many events per second RingReader reads on this machine (run by hand: needs root and BPF).

    .venv/bin/python tests/datapath/bench_reader.py

Two figures: draining a full ring buffer (the reader alone), and reading while a producer thread keeps
running the datapath (BPF_PROG_TEST_RUN with repeat) on the other core, as under load.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dp_packets import ETH_P_IP, IPPROTO_TCP, SYN, eth, ipv4, tcp

from flowscope.observer.datapath import Datapath, DatapathConfig
from flowscope.observer.datapath.testrun import prog_test_run
from flowscope.observer.events import ring_capacity

PACKET = eth(ETH_P_IP, ipv4("192.0.2.1", "192.0.2.2", IPPROTO_TCP, tcp(40000, 80, SYN, bytes(200))))


def drain_rate(dp: Datapath, rounds: int = 20) -> float:
    """Events/s of read_batch over a ring buffer filled to the brim beforehand."""
    reader = dp.reader()
    capacity = ring_capacity(reader.data_size, dp.config.caplen)
    fd = dp.program_fd("from_container")
    total, spent = 0, 0.0
    for _ in range(rounds):
        prog_test_run(fd, PACKET, repeat=capacity)
        start = time.perf_counter()
        batch = reader.read_batch(0)
        spent += time.perf_counter() - start
        total += len(batch)
    return total / spent


def live_rate(dp: Datapath, seconds: float = 3.0) -> tuple[float, float, int]:
    """(events/s read, events/s produced, events lost) with a producer thread running meanwhile."""
    reader = dp.reader()
    fd = dp.program_fd("from_container")
    stop = threading.Event()
    produced = [0]

    def produce() -> None:
        while not stop.is_set():
            prog_test_run(fd, PACKET, repeat=2000)  # ctypes releases the GIL for the syscall
            produced[0] += 2000

    lost_before = sum(dp.lost_counts())
    producer = threading.Thread(target=produce)
    read = 0
    start = time.perf_counter()
    producer.start()
    while time.perf_counter() - start < seconds:
        read += len(reader.read_batch(0.01))
    stop.set()
    producer.join()
    elapsed = time.perf_counter() - start
    read += len(reader.read_batch(0))
    return read / elapsed, produced[0] / elapsed, sum(dp.lost_counts()) - lost_before


def main() -> None:
    with Datapath(DatapathConfig()) as dp:
        print(f"drain a full ring ({dp.config.ring_buffer_pages} pages): {drain_rate(dp) / 1e6:.2f} M events/s")
        read, produced, lost = live_rate(dp)
        print(f"live: read {read / 1e6:.2f} M events/s, produced {produced / 1e6:.2f} M/s, lost {lost}")


if __name__ == "__main__":
    main()
