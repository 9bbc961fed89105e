"""What the agent's datapath costs the traffic, measured in paired windows: its programs on and off in turns.

    .venv/bin/python bench/paired_bench.py [--seconds 300] [--window 0.1] [--levels medium] [--write]

Why: on this machine the CPUs' speed changes by up to two times within a second (a shared host; measured:
throughput in 20 ms samples has a coefficient of variation of 0.44, and its autocorrelation is gone within
about 200 ms). Runs of a few seconds with and without the agent, taken in turns, differ by that much; their
ratio is known to about +-0.15 after a dozen rounds.

How: one long iperf3 run between two pods of a one-node lab, with the real agent running throughout at the
level measured. Every `window` seconds the agent's programs are taken off every device they are on (their tcx
links closed: no program on any hook, as without an observer) or put back (the same programs, so the agent's
conntrack and maps carry on); the traffic delivered into the server pod is read from its veth's counters in
each window, after a short settling time. Neighbouring windows see nearly the same machine, and thousands of
them make the ratio precise: the ratio is (traffic in "on" windows) / (traffic in "off" windows), with a 90%
bootstrap interval over pairs of neighbouring windows. The agent's user-space CPU runs in both kinds of window
and is reported beside (at medium it wakes a few times a second).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyroute2 import IPRoute

from common import IPERF_PORT, NODE, agent, cpu_seconds, server_status, update_results
from flowscope.lab import Lab
from flowscope.lab.netns import inside
from flowscope.observer.datapath import pins
from flowscope.observer.datapath.bpfsys import (
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    link_detach,
    obj_get,
    prog_fd_by_id,
    tcx_link_create,
)
from flowscope.observer.datapath.tc import ENTRY_PROGRAMS, LINKS


@dataclass
class Window:
    on: bool
    rate: float  # bytes/s (TCP) or packets/s (UDP) delivered into the server pod


class Switcher(Protocol):
    """What the windows switch between: `set(True)` and `set(False)` (made and closed in the node's namespace)."""

    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class Switch:
    """The agent's entry programs on the node's devices, taken off and put back (made in the node's namespace).

    Either way is a few bpf(2) calls: tcx links made, or their fds closed, which takes the programs off.
    The agent's own (pinned) links are taken off once at the start; the agent does not notice, and its exit
    removes them as usual. Switching must be quick and cost alike both ways: it weighs on the windows after
    it (putting cls_bpf filters back with pyroute2 took 35-50 ms and showed as a bias of several per cent)."""

    def __init__(self, lab: Lab) -> None:
        self.programs: list[tuple[int, int, int]] = []  # (ifindex, attach type, program fd)
        for found in lab.attached_programs(NODE):
            if found.name in ENTRY_PROGRAMS:
                attach_type = BPF_TCX_INGRESS if found.direction == "ingress" else BPF_TCX_EGRESS
                self.programs.append((socket.if_nametoindex(found.device), attach_type, prog_fd_by_id(found.prog_id)))
        if not self.programs:
            raise RuntimeError("the agent attached no programs")
        for pin in (pins.pin_dir() / LINKS).iterdir():  # the agent's links
            fd = obj_get(str(pin))
            link_detach(fd)
            os.close(fd)
        self.links: list[int] = []
        self.set(True)

    def set(self, on: bool) -> None:
        if on:
            self.links = [tcx_link_create(fd, ifindex, attach_type) for ifindex, attach_type, fd in self.programs]
        else:
            for link in self.links:
                os.close(link)
            self.links = []

    def close(self) -> None:
        self.set(False)
        for _, _, fd in self.programs:
            os.close(fd)


def run_windows(
    lab: Lab,
    traffic: str,
    seconds: float,
    window: float,
    settle: float,
    switcher: Callable[[Lab], Switcher] = Switch,
) -> list[Window]:
    """One iperf3 run of `traffic` ("TCP" or "UDP-64"), switched every `window` s (by default the agent's
    programs on and off)."""
    server = lab.pod("server")
    extra = ["-u", "-l", "64", "-b", "0"] if traffic == "UDP-64" else []
    srv = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("server"), "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    iperf3 = ["iperf3", "-c", server.ipv4, "-p", str(IPERF_PORT), "-t", str(seconds + 3), "-A", "0,1", *extra]
    client = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("client"), *iperf3],
        stdout=subprocess.DEVNULL,  # not read: a full pipe would block iperf3 as it ends
    )
    windows: list[Window] = []
    try:
        time.sleep(1.0)  # past the connection's start
        with inside(lab.netns(NODE)):
            switch = switcher(lab)
            ipr = IPRoute()
            ifindex = ipr.link_lookup(ifname=server.ifname)[0]
            counter = "tx_packets" if extra else "tx_bytes"

            def delivered() -> int:
                return int(ipr.get_links(ifindex)[0].get_attr("IFLA_STATS64")[counter])

            on = True
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    on = not on
                    switch.set(on)
                    time.sleep(settle)
                    c0, t0 = delivered(), time.monotonic()
                    time.sleep(window - settle)
                    c1, t1 = delivered(), time.monotonic()
                    windows.append(Window(on, (c1 - c0) / (t1 - t0)))
            finally:
                switch.close()
                ipr.close()
    finally:
        client.terminate()
        client.wait(timeout=30)
        srv.terminate()
        srv.wait(timeout=30)
    return windows


def ratio(pairs: list[tuple[float, float]]) -> float:
    """Traffic in the "on" windows over traffic in the "off" ones."""
    return sum(on for on, _ in pairs) / sum(off for _, off in pairs)


def ratio_interval(pairs: list[tuple[float, float]], level: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap interval of ratio(): pairs of neighbouring windows drawn again with replacement."""
    rng = random.Random(0)
    ratios = sorted(ratio(rng.choices(pairs, k=len(pairs))) for _ in range(resamples))
    tail = int((1 - level) / 2 * resamples)
    return ratios[tail], ratios[resamples - 1 - tail]


def pair_up(windows: list[Window]) -> list[tuple[float, float]]:
    """(on, off) rates of neighbouring windows, each window in one pair."""
    pairs = []
    for a, b in zip(windows[::2], windows[1::2], strict=False):
        if a.on != b.on:
            pairs.append((a.rate, b.rate) if a.on else (b.rate, a.rate))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="length of each iperf3 run (300)")
    parser.add_argument("--window", type=float, default=0.1, help="seconds the programs stay on or off (0.1)")
    parser.add_argument("--settle", type=float, default=0.01, help="seconds after a switch not counted (0.01)")
    parser.add_argument("--levels", default="medium", help="monitor aggregation levels (medium)")
    parser.add_argument("--traffic", default="TCP,UDP-64", help="TCP, UDP-64 or both (TCP,UDP-64)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    args = parser.parse_args()

    rows = []
    with Lab(f"w{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        for level in [x.strip() for x in args.levels.split(",") if x.strip()]:
            for traffic in [x.strip() for x in args.traffic.split(",") if x.strip()]:
                with agent(lab, level) as pid:
                    seen0, cpu0, t0 = server_status(lab).seen_flows, cpu_seconds(pid), time.monotonic()
                    windows = run_windows(lab, traffic, args.seconds, args.window, args.settle)
                    seen1, cpu1, t1 = server_status(lab).seen_flows, cpu_seconds(pid), time.monotonic()
                pairs = pair_up(windows)
                low, high = ratio_interval(pairs)
                scale, unit = (8e-9, "Gbit/s") if traffic == "TCP" else (1.0, "packets/s")
                on = sum(p[0] for p in pairs) / len(pairs) * scale
                off = sum(p[1] for p in pairs) / len(pairs) * scale
                rows.append(
                    f"| {traffic} | {level} | **{ratio(pairs):.3f}** ({low:.3f} – {high:.3f}) | {len(pairs):,} "
                    f"| {on:,.2f} / {off:,.2f} {unit} | {(cpu1 - cpu0) / (t1 - t0):.1%} "
                    f"| {(seen1 - seen0) / (t1 - t0):,.0f} |"
                )
                print(rows[-1], flush=True)

    lines = [
        "| traffic | level | ratio on/off (90% interval) | pairs of windows | mean on / off "
        "| agent CPU (of one) | events stored/s |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"One iperf3 run of {args.seconds:g} s per row, the agent's programs on and off in turns every "
        f"{args.window:g} s (the first {args.settle:g} s after each switch not counted); one-node lab, pods "
        "client → server, iperf3 client on CPU 0 and server on CPU 1.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "sudo .venv/bin/python bench/paired_bench.py " + " ".join(sys.argv[1:])
        update_results(
            "Datapath, paired windows", f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\n{report}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
