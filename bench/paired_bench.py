"""What the agent's datapath costs the traffic, measured in paired windows: its programs on and off in turns.

    .venv/bin/python bench/paired_bench.py [--seconds 300] [--window 0.1] [--levels medium] [--write]

Why: on this machine the CPUs' speed changes by up to two times within a second (a shared host; measured:
throughput in 20 ms samples has a coefficient of variation of 0.44, and its autocorrelation is gone within
about 200 ms). Runs of a few seconds with and without the agent, taken in turns, differ by that much; their
ratio is known to about +-0.15 after a dozen rounds.

How: one long iperf3 run between two pods of a one-node lab, with the real agent running throughout at the
level measured. Every `window` seconds the agent's programs are taken off every device they are on (the clsact
qdisc removed: no tc hook at all, as without an observer) or put back (the same programs, so the agent's
conntrack and maps carry on); the traffic delivered into the server pod is read from its veth's counters in
each window, after a short settling time. Neighbouring windows see nearly the same machine, and thousands of
them make the ratio precise: the ratio is (traffic in "on" windows) / (traffic in "off" windows), with a 90%
bootstrap interval over pairs of neighbouring windows. The agent's user-space CPU runs in both kinds of window
and is reported beside (at medium it wakes a few times a second).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import IPERF_PORT, cpu_seconds, server_status, update_results
from pyroute2 import IPRoute

from lab import Lab
from observer.datapath.bpfsys import bpf
from observer.datapath.tc import FILTER_PREFIX, TC_H_EGRESS, TC_H_INGRESS

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
NODE = "node1"
BPF_PROG_GET_FD_BY_ID = 13
CLONE_NEWNET = 0x40000000
_FILTER = re.compile(r"flowscope:(\S+) .*?\bid (\d+)")
_libc = ctypes.CDLL(None, use_errno=True)
# rtnetlink and cls_bpf numbers (linux/rtnetlink.h, linux/pkt_cls.h)
NETLINK_ROUTE, NLMSG_ERROR = 0, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NEW = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
DEL = NLM_F_REQUEST | NLM_F_ACK
RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER = 36, 37, 44
TC_H_CLSACT = 0xFFFFFFF1
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_CLASSID, TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 3, 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


@contextmanager
def inside(netns: str) -> Iterator[None]:
    """The calling thread in a named network namespace for the block (setns moves one thread only)."""
    home = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
    home_fd = os.open(home, os.O_RDONLY)
    try:
        _setns(f"/run/netns/{netns}")
        try:
            yield
        finally:
            if _libc.setns(home_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(home_fd)


@dataclass
class Window:
    on: bool
    rate: float  # bytes/s (TCP) or packets/s (UDP) delivered into the server pod


def _attr(kind: int, payload: bytes) -> bytes:
    """A netlink attribute, padded to 4 bytes."""
    raw = struct.pack("<HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def _tc_message(kind: int, flags: int, ifindex: int, handle: int, parent: int, info: int, attrs: bytes) -> bytes:
    body = struct.pack("<BxxxiIII", socket.AF_UNSPEC, ifindex, handle, parent, info) + attrs
    return struct.pack("<IHHII", 16 + len(body), kind, flags, 0, 0) + body


class Switch:
    """The agent's tc programs on the node's devices, taken off and put back (made in the node's namespace).

    Both ways are a few netlink messages sent at once, prepared beforehand: switching takes well under a
    millisecond either way, so it weighs alike on the windows that follow (pyroute2 took 35-50 ms of CPU to
    put the programs back and 6-11 ms to take them off, which showed as a bias of several per cent)."""

    def __init__(self, lab: Lab) -> None:
        devices = [pod.ifname for pod in lab.pods if pod.node == NODE] + ["eth0"]
        self.fds: list[int] = []
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        ipr = IPRoute()
        clsact = _attr(TCA_KIND, b"clsact\0")
        off, on = [], []
        for device in devices:
            (ifindex,) = ipr.link_lookup(ifname=device)
            off.append(_tc_message(RTM_DELQDISC, DEL, ifindex, 0xFFFF0000, TC_H_CLSACT, 0, clsact))
            on.append(_tc_message(RTM_NEWQDISC, NEW, ifindex, 0xFFFF0000, TC_H_CLSACT, 0, clsact))
            for parent, direction in ((TC_H_INGRESS, "ingress"), (TC_H_EGRESS, "egress")):
                # pyroute2 does not decode a filter's program id; tc shows it
                shown = lab.exec(NODE, ["tc", "filter", "show", "dev", device, direction]).stdout
                ids = {f"{FILTER_PREFIX}{label}": int(prog_id) for label, prog_id in _FILTER.findall(shown)}
                for msg in ipr.get_filters(index=ifindex, parent=parent):
                    options = msg.get_attr("TCA_OPTIONS")
                    name = (options.get_attr("TCA_BPF_NAME") or "") if options is not None else ""
                    if not name.startswith(FILTER_PREFIX):
                        continue
                    fd = bpf(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=ids[name]))
                    self.fds.append(fd)
                    bpf_options = (
                        _attr(TCA_BPF_FD, struct.pack("<I", fd))
                        + _attr(TCA_BPF_NAME, name.encode() + b"\0")
                        + _attr(TCA_BPF_FLAGS, struct.pack("<I", TCA_BPF_FLAG_ACT_DIRECT))
                        + _attr(TCA_BPF_CLASSID, struct.pack("<I", 1))
                    )
                    attrs = _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS, bpf_options)
                    on.append(_tc_message(RTM_NEWTFILTER, NEW, ifindex, msg["handle"], parent, msg["info"], attrs))
        ipr.close()
        if not self.fds:
            raise RuntimeError("the agent attached no programs")
        self.batches = {False: off, True: on}

    def set(self, on: bool) -> None:
        messages = self.batches[on]
        self.sock.send(b"".join(messages))
        for _ in messages:  # one acknowledgement each, an error code of 0 when it went through
            reply = self.sock.recv(65536)
            while reply:
                length, kind = struct.unpack_from("<IH", reply)
                if kind == NLMSG_ERROR and struct.unpack_from("<i", reply, 16)[0]:
                    raise OSError(-struct.unpack_from("<i", reply, 16)[0], "switching the programs")
                reply = reply[length:]

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


def run_windows(lab: Lab, traffic: str, seconds: float, window: float, settle: float) -> list[Window]:
    """One iperf3 run of `traffic` ("TCP" or "UDP-64"), the agent's programs switched every `window` s."""
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
            switch = Switch(lab)
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
                if not on:
                    switch.set(True)
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


@contextmanager
def agent(lab: Lab, level: str) -> Iterator[int]:
    (daemon,) = lab.start_agents()
    try:
        server = f"unix://{lab.agent_socket(NODE)}"
        subprocess.run(
            [FLOWSCOPE, "config", "set", "monitor-aggregation", level, "--server", server],
            check=True,
            capture_output=True,
        )
        yield daemon.pid
    finally:
        lab.stop(daemon)


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
