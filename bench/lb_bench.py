"""What services cost the datapath: a lookup on a packet to no service, and a translated connection's packets.

    sudo .venv/bin/python bench/lb_bench.py [--parts cost,stream] [--rounds 2000] [--seconds 120] [--write]

Two parts (issue 13, item 5):

cost    Per packet, in BPF_PROG_TEST_RUN, modes taken in turns (a fraction of a millisecond each, so that all meet
        the same speed of this machine, whose CPUs change speed by up to two times within a second):
        from_container: `none` (no frontend: services_active 0, the stage skipped), `lookup` (frontends present,
        the packet to no frontend: one lb_frontends miss), `dnat` (the next packet of an established connection
        to a ClusterIP: the frontend found, its backend chosen, the packet rewritten, lb_reverse refreshed);
        to_container: `none`, `lookup` (a packet that is no reply to a translated connection: one lb_reverse
        miss), `rnat` (a reply of the translated connection: its source written back to the ClusterIP).
        The kernel runs a test packet `repeat` times on *one* copy of it, so a translated packet would be
        translated only the first time: every mode is measured in calls with repeat 1 (the same input bytes
        each time), its output checked to be translated, for every mode alike. A call's figure therefore
        includes the kernel's timing of one run and cold caches; the differences between modes do not include
        the timing. Every mode is also measured warm, with repeat `--repeat` (odd): the translated modes then
        run through two frontends that are each other's backend (CYCLE), so every run is a translation again.
stream  On real traffic: a one-node lab, this checkout's datapath on the node's hooks (no agent; monitor
        aggregation medium) with one frontend, a test-only ClusterIP whose one backend is the web pod's iperf3
        port. Two iperf3 TCP streams from the client pod to the web pod, one to the pod's own address and one
        to the ClusterIP (the same backend pod, the same path but for the translation), take turns: every
        `window` seconds one is stopped (SIGSTOP) and the other continued (two at once would compete for the
        two CPUs), and the bytes delivered into the web pod are read from its veth's counters after a short
        settling time (bench/paired_bench.py's method; slow start after idle is off in the client pod, so a
        continued stream does not start again from a small window). The figure: the median over pairs of
        neighbouring windows of (translated / untranslated) and its 90% bootstrap interval; target: within 3%.

Everything it makes (the lab's namespaces, the iperf3 processes, the programs and links) goes when it ends, also
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from trace_bench import median_interval

if TYPE_CHECKING:
    from flowscope.lab import Lab
    from flowscope.observer.datapath import Datapath

HERE = Path(__file__).resolve()
TCP = 6
# cost: the test packets' addresses (loopback, the test runs' device, is the client pod's endpoint)
CLIENT, PEER, CLUSTER_IP, BACKEND = "10.0.1.5", "10.0.2.9", "10.96.0.10", "10.0.2.1"
SERVICE_PORT, BACKEND_PORT, CLIENT_PORT, FRONTEND_ID = 80, 8080, 40000, 7
FRONTENDS = 100  # frontends present in the cost part's `lookup` and `dnat` modes (the table is a hash: any number)
MODES = {"from_container": ("none", "lookup", "dnat"), "to_container": ("none", "lookup", "rnat")}
UNTOUCHED = ("none", "lookup")
# Repeated runs of a translated packet: two frontends, each the other's backend, so that every run of the one
# copy the kernel keeps is a packet to a frontend (dnat), or a reply from a translated connection's backend (rnat)
CYCLE, CYCLE_ID = ("10.96.1.1", "10.96.1.2"), 1000
# stream: a test-only ClusterIP in front of the web pod's second iperf3 server
STREAM_CLUSTER_IP, DIRECT_PORT, SERVICE_STREAM_PORT = "10.96.255.250", 5201, 5202


def _packets() -> dict[tuple[str, str, bool], tuple[bytes, bytes]]:
    """(program, mode, warm) → (the packet that opens its connection, the packet measured)."""
    sys.path[:0] = [str(HERE.parents[1] / "tests" / "datapath")]
    from dp_packets import ACK, ETH_P_IP, IPPROTO_TCP, SYN, eth, ipv4, tcp

    def packet(src: str, sport: int, dst: str, dport: int, flags: int) -> bytes:
        return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_TCP, tcp(sport, dport, flags, bytes(10) if flags == ACK else b"")))

    plain = {
        "from_container": (
            packet(CLIENT, CLIENT_PORT + 1, PEER, SERVICE_PORT, SYN),
            packet(CLIENT, CLIENT_PORT + 1, PEER, SERVICE_PORT, ACK),
        ),
        "to_container": (
            packet(PEER, SERVICE_PORT, CLIENT, CLIENT_PORT + 1, SYN | ACK),
            packet(PEER, SERVICE_PORT, CLIENT, CLIENT_PORT + 1, ACK),
        ),
    }
    packets = {(program, mode, warm): plain[program] for program in MODES for mode in UNTOUCHED for warm in (0, 1)}
    packets[("from_container", "dnat", False)] = (
        packet(CLIENT, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT, SYN),
        packet(CLIENT, CLIENT_PORT, CLUSTER_IP, SERVICE_PORT, ACK),
    )
    packets[("to_container", "rnat", False)] = (
        packet(BACKEND, BACKEND_PORT, CLIENT, CLIENT_PORT, SYN | ACK),
        packet(BACKEND, BACKEND_PORT, CLIENT, CLIENT_PORT, ACK),
    )
    a, b = CYCLE
    packets[("from_container", "dnat", True)] = (
        packet(CLIENT, CLIENT_PORT + 2, a, SERVICE_PORT, SYN),
        packet(CLIENT, CLIENT_PORT + 2, a, SERVICE_PORT, ACK),
    )
    packets[("to_container", "rnat", True)] = (
        packet(b, SERVICE_PORT, CLIENT, CLIENT_PORT + 2, SYN | ACK),
        packet(b, SERVICE_PORT, CLIENT, CLIENT_PORT + 2, ACK),
    )
    return packets


def _as_meant(mode: str, warm: bool, sent: bytes, out: bytes) -> bool:
    """Whether a call's output is what the mode means: the backend as destination (dnat), the ClusterIP as
    source (rnat), the packet untouched (none, lookup); after an odd number of runs through the CYCLE, the
    other frontend as destination (dnat) or source (rnat). IPv4 behind a 14-byte Ethernet header."""
    if mode == "dnat":
        address, port = (CYCLE[1], SERVICE_PORT) if warm else (BACKEND, BACKEND_PORT)
        return out[30:34] == socket.inet_aton(address) and out[36:38] == port.to_bytes(2, "big")
    if mode == "rnat":
        address = CYCLE[0] if warm else CLUSTER_IP
        return out[26:30] == socket.inet_aton(address) and out[34:36] == SERVICE_PORT.to_bytes(2, "big")
    return out == sent


def _frontends() -> list:
    """The cost part's frontends: the measured one, and others on other ClusterIPs."""
    from flowscope.observer.datapath.lbmaps import Backend, Frontend

    others = [
        Frontend(
            FRONTEND_ID + 1 + i,
            str(ipaddress.IPv4Address(CLUSTER_IP) + 1 + i),
            SERVICE_PORT,
            TCP,
            False,
            (Backend(BACKEND, BACKEND_PORT),),
        )
        for i in range(FRONTENDS - 1)
    ]
    a, b = CYCLE
    cycle = [
        Frontend(CYCLE_ID, a, SERVICE_PORT, TCP, False, (Backend(b, SERVICE_PORT),)),
        Frontend(CYCLE_ID + 1, b, SERVICE_PORT, TCP, False, (Backend(a, SERVICE_PORT),)),
    ]
    return [
        Frontend(FRONTEND_ID, CLUSTER_IP, SERVICE_PORT, TCP, False, (Backend(BACKEND, BACKEND_PORT),)),
        *others,
        *cycle,
    ]


def cost(rounds: int, calls: int, repeat: int) -> list[str]:
    """The `cost` part's table."""
    from flowscope.observer.datapath import Datapath, DatapathConfig
    from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run

    packets = _packets()
    lines = [
        "| program | mode | packets a call | ns per packet (median) | − none: ns (90% interval) | runs translated |",
        "|---|---|---|---|---|---|",
    ]
    with Datapath(DatapathConfig(ring_buffer_pages=1024)) as dp:
        dp.set_endpoint(1, 7, 5555)
        dp.update_config(aggregation=3, report_flags=7)
        dp.lb.replace(_frontends())
        events = dp.reader()
        for program, mode, warm in packets:  # the connections (and lb_reverse entries) exist from here on
            result = prog_test_run(dp.program_fd(program), packets[(program, mode, warm)][0], repeat=2 if warm else 1)
            if result.retval != TC_ACT_OK:
                raise RuntimeError(f"{program} {mode}: the opening packet got verdict {result.retval}")
        events.read_batch(0)
        try:
            for program, modes in MODES.items():
                fd = dp.program_fd(program)
                # (mode, repeat): every mode one packet a call; the untranslated ones also `repeat` a call
                runs = [(mode, 1) for mode in modes] + [(mode, repeat) for mode in modes]
                ns: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
                translated = dict.fromkeys(runs, 0)
                for i in range(rounds):
                    for run in runs[i % len(runs) :] + runs[: i % len(runs)]:  # each goes first in turn
                        mode, times = run
                        dp.update_config(services_active=int(mode != "none"))  # the same map write before each
                        sent = packets[(program, mode, times > 1)][1]
                        took = 0
                        for _ in range(calls if times == 1 else 1):
                            result = prog_test_run(fd, sent, repeat=times)
                            took += result.duration_ns
                            if result.retval != TC_ACT_OK or not _as_meant(mode, times > 1, sent, result.data_out):
                                raise RuntimeError(f"{program} {mode}: verdict {result.retval}, output not as meant")
                            translated[run] += mode in ("dnat", "rnat")
                            translated[run] += (times - 1) * (mode in ("dnat", "rnat"))  # each of them
                        ns[run].append(took / (calls if times == 1 else 1))
                    events.read_batch(0)
                for run in runs:
                    mode, times = run
                    diffs = [a - b for a, b in zip(ns[run], ns[("none", times)], strict=True)]
                    low, high = median_interval(diffs)
                    shown = f"{statistics.median(diffs):+.1f} ({low:+.1f} – {high:+.1f})" if mode != "none" else "—"
                    total = rounds * (calls if times == 1 else times)
                    done = f"{translated[run]:,} of {total:,}" if mode in ("dnat", "rnat") else "—"
                    lines.append(
                        f"| {program} | {mode} | {times} | {statistics.median(ns[run]):.1f} | {shown} | {done} |"
                    )
                    print(lines[-1], flush=True)
        finally:
            dp.lb.replace([])
    lines += [
        "",
        f"{rounds} rounds per program, each running every row once in turn (the first row going round). A row "
        f"with 1 packet a call: the mean of {calls} calls of BPF_PROG_TEST_RUN with repeat 1 (each call gets the "
        "untranslated packet again, since the kernel runs repeats on one copy that the first run rewrote; the "
        "kernel times the one run, its clock reads included, and every call starts with cold caches: higher "
        f"figures than a stream of packets has). A row with {repeat}: one call with repeat {repeat}, the "
        "kernel's mean per run, warm; its dnat and rnat packets go through two frontends that are each other's "
        f"backend ({CYCLE[0]}:80 and {CYCLE[1]}:80), so that every run of the one copy is translated again (the "
        "output after an odd number of runs shows the other frontend: checked). The packet: the ACK with 10 "
        "bytes of an established TCP connection, at monitor aggregation medium. "
        f"{FRONTENDS} frontends present in `lookup`, `dnat` and `rnat`; `none` is the same datapath and maps with "
        "services_active 0 (the stage skipped). The difference column is the median over rounds of (the row's "
        "figure − the round's `none` figure with as many packets a call), with a 90% bootstrap interval; the "
        "kernel gives whole ns. Runs translated: with 1 packet a call, calls whose output had the backend as "
        "destination (dnat) or the ClusterIP as source (rnat); with more, the runs of calls whose output showed "
        "the cycle's other frontend.",
    ]
    return lines


@contextmanager
def attached(lab: Lab, node: str) -> Iterator[Datapath]:
    """This checkout's datapath on `node`'s pod and device hooks (tcx links), its ring read as the agent would."""
    from flowscope.lab.netns import inside
    from flowscope.observer.datapath import Datapath
    from flowscope.observer.datapath.bpfsys import BPF_TCX_EGRESS, BPF_TCX_INGRESS, tcx_link_create

    hooks = (("from_container", BPF_TCX_INGRESS), ("to_container", BPF_TCX_EGRESS))
    with Datapath() as dp:
        dp.update_config(aggregation=3, report_flags=7)
        links: list[int] = []
        reader, done = dp.reader(), threading.Event()

        def read_events() -> None:
            while not done.is_set():
                reader.read_batch(100)

        drain = threading.Thread(target=read_events, daemon=True)
        try:
            with inside(lab.netns(node)):
                for i, pod in enumerate(p for p in lab.pods if p.node == node):
                    ifindex = socket.if_nametoindex(pod.ifname)
                    dp.set_endpoint(ifindex, 100 + i, 5000 + i)
                    links += [tcx_link_create(dp.program_fd(name), ifindex, kind) for name, kind in hooks]
                eth0 = socket.if_nametoindex("eth0")
                links += [
                    tcx_link_create(dp.program_fd(name), eth0, kind)
                    for name, kind in (("from_netdev", BPF_TCX_INGRESS), ("to_netdev", BPF_TCX_EGRESS))
                ]
            drain.start()
            yield dp
        finally:
            done.set()
            if drain.is_alive():
                drain.join(5)
            for link in links:
                os.close(link)
            dp.lb.replace([])


def stream(lab: Lab, seconds: float, window: float, settle: float) -> list[str]:
    """The `stream` part's table: a direct and a translated TCP stream to the web pod, in turns."""
    from paired_bench import Window, pair_up, ratio, ratio_interval
    from pyroute2 import IPRoute

    from flowscope.lab.netns import inside
    from flowscope.observer.datapath.lbmaps import Backend, Frontend

    node, web = "node1", lab.pod("web")
    frontend = Frontend(
        1, STREAM_CLUSTER_IP, SERVICE_STREAM_PORT, TCP, False, (Backend(web.ipv4, SERVICE_STREAM_PORT),)
    )
    procs: list[subprocess.Popen[bytes]] = []

    def start(pod: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns(pod), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        procs.append(proc)
        return proc

    subprocess.run(
        ["ip", "netns", "exec", lab.netns("client"), "sysctl", "-qw", "net.ipv4.tcp_slow_start_after_idle=0"],
        check=True,
    )
    windows: list[Window] = []
    with attached(lab, node) as dp:
        dp.lb.replace([frontend])
        try:
            for port in (DIRECT_PORT, SERVICE_STREAM_PORT):
                start("web", ["iperf3", "-s", "-1", "-p", str(port), "-A", "1"])
            time.sleep(0.3)
            client = ["iperf3", "-t", f"{seconds + 5:g}", "-A", "0"]
            direct = start("client", [*client, "-c", web.ipv4, "-p", str(DIRECT_PORT)])
            via = start("client", [*client, "-c", STREAM_CLUSTER_IP, "-p", str(SERVICE_STREAM_PORT)])
            time.sleep(1.0)  # both connected and past their start
            if not [e for e in dp.lb.reverse_entries() if e.backend.port == SERVICE_STREAM_PORT]:
                raise RuntimeError("the stream to the ClusterIP was not translated")
            with inside(lab.netns(node)), IPRoute() as ipr:
                ifindex = ipr.link_lookup(ifname=web.ifname)[0]

                def delivered() -> int:
                    return int(ipr.get_links(ifindex)[0].get_attr("IFLA_STATS64")["tx_bytes"])

                on, end = True, time.monotonic() + seconds
                while time.monotonic() < end:
                    on = not on
                    (direct if on else via).send_signal(signal.SIGSTOP)
                    (via if on else direct).send_signal(signal.SIGCONT)
                    time.sleep(settle)
                    c0, t0 = delivered(), time.monotonic()
                    time.sleep(window - settle)
                    c1, t1 = delivered(), time.monotonic()
                    windows.append(Window(on, (c1 - c0) / (t1 - t0)))  # on: the translated stream's window
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError("an iperf3 ended before the windows did")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    pairs = pair_up(windows)
    per_pair = [on / off for on, off in pairs if off > 0]
    low, high = median_interval(per_pair)
    sum_low, sum_high = ratio_interval(pairs)
    median = statistics.median(per_pair)
    translated = sum(p[0] for p in pairs) / len(pairs) * 8e-9
    direct_rate = sum(p[1] for p in pairs) / len(pairs) * 8e-9
    if low >= 0.97:
        met = "**yes**"
    elif high < 0.97:
        met = "**no**"
    else:
        met = "not shown: the interval reaches below 0.97"
    return [
        "| traffic | median ratio translated / direct (90% interval) | ratio of sums (90% interval) "
        "| pairs of windows | mean translated / direct | within 3% |",
        "|---|---|---|---|---|---|",
        f"| TCP, one stream at a time | **{median:.3f}** ({low:.3f} – {high:.3f}) "
        f"| {ratio(pairs):.3f} ({sum_low:.3f} – {sum_high:.3f}) | {len(pairs):,} "
        f"| {translated:.2f} / {direct_rate:.2f} Gbit/s | {met} |",
        "",
        f"Two iperf3 TCP streams client pod → web pod of a one-node lab for {seconds:g} s, one to the pod's address "
        f"and one to {STREAM_CLUSTER_IP}:{SERVICE_STREAM_PORT}, a ClusterIP whose one backend is the same pod; every "
        f"{window:g} s one stopped and the other continued (the first {settle:g} s after each switch not counted), "
        "bytes delivered into the web pod from its veth's counters. This checkout's datapath on node1's hooks at "
        "medium (no agent); iperf3 clients on CPU 0, servers on CPU 1; slow start after idle off in the client "
        "pod. Ratios: median over pairs of neighbouring windows of translated / direct, and the ratio of the sums "
        "(bench/paired_bench.py's figure), each with a 90% bootstrap interval over pairs.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="cost,stream", help="which parts: cost, stream (both)")
    parser.add_argument("--rounds", type=int, default=2000, help="cost: rounds per program (2000)")
    parser.add_argument("--calls", type=int, default=10, help="cost: calls of one run per mode and round (10)")
    parser.add_argument("--repeat", type=int, default=101, help="cost: packets a warm call, odd (101)")
    parser.add_argument("--seconds", type=float, default=120.0, help="stream: seconds of windows (120)")
    parser.add_argument("--window", type=float, default=0.1, help="stream: seconds each stream runs in turn (0.1)")
    parser.add_argument("--settle", type=float, default=0.02, help="stream: seconds after a switch not counted (0.02)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    args = parser.parse_args()
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if parts - {"cost", "stream"} or not parts:
        parser.error(f"--parts: cost or stream, not {args.parts!r}")
    if args.repeat < 3 or args.repeat % 2 == 0:
        parser.error("--repeat must be odd and at least 3 (a translated packet's cycle ends on the other frontend)")
    if not 0 <= args.settle < args.window:
        parser.error("--settle must be at least 0 and shorter than --window")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: the lab and processes go

    sections: list[str] = []
    if "cost" in parts:
        table = cost(args.rounds, args.calls, args.repeat)
        sections += ["Cost per packet (BPF_PROG_TEST_RUN):", "", *table, ""]
    if "stream" in parts:
        from flowscope.lab import Lab

        with Lab(f"lb{os.getpid()}") as lab:
            lab.up(traffic=False, agent=False)
            table = stream(lab, args.seconds, args.window, args.settle)
            sections += ["A translated TCP stream beside an untranslated one (paired windows):", "", *table, ""]
    report = "\n".join(sections)
    print(report)
    if args.write:
        from common import update_results

        command = "sudo .venv/bin/python bench/lb_bench.py " + " ".join(sys.argv[1:])
        update_results("Services (issue 13)", f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\n{report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
