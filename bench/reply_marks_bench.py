"""What the agent pays to give kernel drops their direction (observer/datapath/reply_marks.py): CPU per record.

A loaded datapath (no pins) tracks N UDP connections made by real packets (BPF_PROG_TEST_RUN on its
from-container program); their trace records, with the reply flags cleared, stand for kernel drops of those
connections (a found entry), and the same records with a port no packet used for drops of no known connection
(the entry is looked for, then every frontend's backends). Before the change nothing was looked up: the cost
is all added. Needs root.

    .venv/bin/python bench/reply_marks_bench.py [--connections 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import time

import numpy as np

from flowscope.observer import events
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.reply_marks import ReplyMarks
from flowscope.observer.datapath.testrun import prog_test_run

POD, PEER = "192.0.2.10", "198.51.100.20"


def udp_packet(sport: int, dport: int) -> bytes:
    """Ethernet, IPv4 and UDP headers with a few bytes of payload (checksums the datapath does not check)."""
    payload = b"query"
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, *(ipaddress.ip_address(a).packed for a in (POD, PEER))
    )
    return bytes(6) + bytes.fromhex("020000000001") + struct.pack("!H", 0x0800) + ip + udp


class Nothing:
    """A BatchSource with nothing to read: ReplyMarks.mark is timed on its own."""

    def read_batch(self, timeout: float) -> np.ndarray:
        return np.empty(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dp = Datapath()
    try:
        dp.set_endpoint(1, 7, 5555)  # loopback, where a test run's packet comes from
        fd = dp.program_fd("from_container")
        batches = []
        for i in range(args.connections):
            prog_test_run(fd, udp_packet(20000 + i, 53))
            batches.append(dp.reader().read_batch(0))
        found = np.concatenate(batches)
        found["flags"] &= np.uint8(~(events.F_REPLY | events.F_REPLY_KNOWN) & 0xFF)
        missing = found.copy()
        missing["dport"] = 54  # no connection
        marks = ReplyMarks(Nothing(), dp.conntrack, dp.lb.frontends)
        for name, records in (("found", found), ("not found", missing)):
            per_record = []
            for _ in range(args.rounds):
                batch = records.copy()
                start = time.process_time_ns()
                marked = marks.mark(batch)
                per_record.append((time.process_time_ns() - start) / len(batch) / 1000)
            expected = len(records) if name == "found" else 0
            assert marked == expected, (name, marked)
            cost = f"{min(per_record):.1f} us CPU per record (median {np.median(per_record):.1f})"
            print(f"{name:>10}: {cost}, {len(records)} records, {args.rounds} rounds")
    finally:
        dp.close()


if __name__ == "__main__":
    main()
