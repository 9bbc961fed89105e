"""What packet-path sessions cost the datapath, and how fast a session can follow packets without losing hops.

    sudo .venv/bin/python bench/trace_bench.py [--parts cost,flood,rate] [--before CHECKOUT] [--write]

Three parts (issue 12's benchmarks):

cost   Per packet, in BPF_PROG_TEST_RUN (the kernel runs an entry program and its tail calls `--repeat` times on a
       packet of an established TCP connection, at monitor aggregation medium, and says the mean ns per run),
       in four modes taken in turns, a fraction of a millisecond each, so that all meet the same speed of this
       machine (its CPUs change speed by up to two times within a second): the --before checkout's datapath
       (from before session support, loaded by a worker process of its own, bench/checkouts.py); this one with
       no session; with a session whose filter matches nothing (`tcp and port 9`: every packet pays the
       trace_packets lookup and the filter); with a session that picks the packet (`tcp and port 80`, count
       1000, its picks reset before each run): every run is a tracked packet, whose hops are counted in the
       session's ring. Differences are means over the rounds of neighbouring runs, with 90% bootstrap
       intervals; cost per hop = (tracked - untracked with the session) / hops per packet.
flood  Per packet on real traffic: one 64-byte UDP flood between two pods of a one-node lab, this checkout's
       datapath on the node's hooks (no agent), and every 0.1 s a session matching nothing started (its slot
       live and the kernel tracepoints attached, as the agent does) or stopped (paired windows,
       bench/paired_bench.py). This adds what `cost` cannot see: the tracepoints run for every skb.
rate   The largest packet rate a session follows without losing hops, through the real agent: for each rate,
       `flowscope trace --pcap-filter 'udp and dst port 5201' --count 1000 -o jsonpb` on the node's agent while
       iperf3 sends 64-byte datagrams at that rate from pod to pod; hops received and SessionEnded.hops_lost
       (the ring's and the agent's queue's losses together).

Everything it makes (the lab's namespaces and daemons, workers, links, tracepoints) goes when it ends, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from checkouts import import_checkout, link_tree

if TYPE_CHECKING:
    from flowscope.lab import Lab

# Nothing of this checkout's flowscope at module level: a worker must load its own checkout's (checkouts.py).
HERE = Path(__file__).resolve()
PROGRAMS = ("from_container", "to_container", "from_netdev")
POD, PEER, IDENTITY = "192.0.2.1", "192.0.2.2", 5555
IDLE, TRACKED = "tcp and port 9", "tcp and port 80"  # the bench packets are TCP port 80
MODES = {"none": 0, "idle": 1 << 0, "tracked": 1 << 1}  # cfg.trace_active; slot 0 idle, slot 1 tracked
COUNT = 1000  # the agent's largest count (observer/trace/sessions.py MAX_COUNT)
RATE_FILTER = "udp and dst port 5201"


class NoPods:
    """The filters here name no pods."""

    def pod_addresses(self, namespace: str, pod: str) -> Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return ()


def serve(tree: Path, sessions: bool) -> None:
    """A `cost` worker: load the checkout's datapath (and with `sessions`, the two sessions' slots), then answer
    "<mode> <program> <repeat>" lines with "<mean ns per run> <hops written> <hops lost>", until stdin closes."""
    import_checkout(tree)
    sys.path[:0] = [str(tree / "tests" / "datapath")]
    from dp_packets import ACK, ETH_P_IP, IPPROTO_TCP, SYN, eth, ipv4, tcp

    from flowscope.observer.datapath import Datapath, DatapathConfig
    from flowscope.observer.datapath.testrun import prog_test_run

    def packet(src: str, dst: str, sport: int, flags: int, payload: bytes = b"") -> bytes:
        return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_TCP, tcp(sport, 80, flags, payload)))

    out = (packet(POD, PEER, 40000, SYN), packet(POD, PEER, 40000, ACK, bytes(10)))
    into = (packet(PEER, POD, 40001, SYN), packet(PEER, POD, 40001, ACK, bytes(10)))
    packets = {"from_container": out, "to_container": into, "from_netdev": into}
    with Datapath(DatapathConfig(ring_buffer_pages=4096)) as dp:
        dp.set_endpoint(1, 7, IDENTITY)  # loopback, the test runs' device, is the endpoint
        dp.update_config(aggregation=3, report_flags=7)
        for program, (first, _) in packets.items():
            prog_test_run(dp.program_fd(program), first)  # the connections exist from here on
        events = dp.reader()
        restart = None
        if sessions:
            from flowscope.observer.datapath.c_source import header_define
            from flowscope.observer.datapath.pathtrace import PathTracer
            from flowscope.observer.trace.filter import compile_filter

            kernel_hop = header_define("trace.h", "FS_HOP_KERNEL")  # the test skb's free: once a run, not counted
            tracer = PathTracer(dp)
            hops_ring = tracer.reader()
            filters = [compile_filter([], text, NoPods()) for text in (IDLE, TRACKED)]
            for slot, compiled in enumerate(filters):
                tracer.start(slot, slot + 1, COUNT, compiled.encoded(), len(compiled.terms))

            def restart() -> None:  # count it from 0 again (and its `lost`)
                tracer.start(1, 2, COUNT, filters[1].encoded(), len(filters[1].terms))

        print("ready", flush=True)
        try:
            for line in sys.stdin:
                mode, program, repeat = line.split()
                if restart is not None:
                    if mode == "tracked":
                        restart()
                    dp.update_config(trace_active=MODES[mode])
                elif mode == "none":
                    dp.update_config(aggregation=3)  # the same map write before each run as the other worker's
                else:
                    raise SystemExit(f"{tree} has no packet-path sessions")
                ns = prog_test_run(dp.program_fd(program), packets[program][1], repeat=int(repeat)).duration_ns
                events.read_batch(0)
                hops = lost = 0
                if restart is not None:
                    hops = int((hops_ring.read_batch(0)["kind"] != kernel_hop).sum())
                    lost = tracer.state(0).lost + tracer.state(1).lost
                print(ns, hops, lost, flush=True)
        finally:
            if restart is not None:
                tracer.close()


class Worker:
    def __init__(self, tree: Path, sessions: bool) -> None:
        argv = [sys.executable, str(HERE), "--serve", str(tree)] + (["--sessions"] if sessions else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin: IO[str] = self.proc.stdin
        self.stdout: IO[str] = self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the worker for {tree} did not start")

    def run(self, mode: str, program: str, repeat: int) -> tuple[int, int, int]:
        self.stdin.write(f"{mode} {program} {repeat}\n")
        self.stdin.flush()
        ns, hops, lost = self.stdout.readline().split()
        return int(ns), int(hops), int(lost)

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def median_interval(values: Sequence[float], level: float = 0.9, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap interval of the median (the median: a run the machine slowed down weighs no more than another)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = int((1 - level) / 2 * resamples)
    return medians[tail], medians[resamples - 1 - tail]


def cost(before: Path | None, rounds: int, repeat: int) -> list[str]:
    """The `cost` part's table."""
    base_run = ("this", "none")
    runs = [base_run, ("this", "idle"), ("this", "tracked")]
    workers = {"this": Worker(HERE.parents[1], sessions=True)}
    try:
        if before is not None:
            workers["before"] = Worker(before, sessions=False)
            runs.insert(0, ("before", "none"))
        lines = [
            "| program | mode | ns per packet (median) | − this, no session: ns (90% interval) | hops per packet "
            "| ns per tracked hop (90% interval) | hops lost |",
            "|---|---|---|---|---|---|---|",
        ]
        for program in PROGRAMS:
            ns: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
            hops: dict[tuple[str, str], int] = dict.fromkeys(runs, 0)
            lost = 0
            for i in range(rounds):
                order = runs[i % len(runs) :] + runs[: i % len(runs)]  # each goes first in turn
                for label, mode in order:
                    took, written, missed = workers[label].run(mode, program, repeat)
                    ns[(label, mode)].append(took)
                    hops[(label, mode)] += written
                    lost += missed
            base = ns[base_run]
            per_packet = hops[("this", "tracked")] / (rounds * repeat)
            if not per_packet:
                raise RuntimeError(f"{program}: the session `{TRACKED}` followed no packet")
            per_hop = [(t - u) / per_packet for t, u in zip(ns[("this", "tracked")], ns[("this", "idle")], strict=True)]
            low_hop, high_hop = median_interval(per_hop)
            hop_cell = f"{statistics.median(per_hop):.1f} ({low_hop:.1f} – {high_hop:.1f})"
            for run in runs:
                label, mode = run
                diffs = [a - b for a, b in zip(ns[run], base, strict=True)]
                low, high = median_interval(diffs)
                shown = f"{statistics.median(diffs):+.1f} ({low:+.1f} – {high:+.1f})" if run != base_run else "—"
                tracked = mode == "tracked"
                lines.append(
                    f"| {program} | {label}: {mode} | {statistics.median(ns[run]):.0f} | {shown} "
                    f"| {hops[run] / (rounds * repeat):.2f} | {hop_cell if tracked else ''} "
                    f"| {lost if tracked else ''} |"
                )
                print(lines[-1], flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    lines += [
        "",
        f"{rounds} rounds per program, each running every mode once in turn (the first mode going round), "
        f"{repeat} packets per run (BPF_PROG_TEST_RUN, an established TCP connection's ACK at monitor "
        "aggregation medium; the kernel gives whole ns per packet). The difference column is the median over "
        "rounds of (this run − the round's no-session run of this checkout); ns per tracked hop = (tracked − "
        "idle) / hops per packet, median over rounds; intervals are 90% bootstrap intervals of the medians. "
        f"Modes: none = no session; idle = a session `{IDLE}` (matches nothing); tracked = a session "
        f"`{TRACKED}`, count {COUNT}, picking the packet.",
    ]
    return lines


def flood(lab: Lab, seconds: float, window: float, settle: float) -> list[str]:
    """The `flood` part's table: a UDP-64 flood, an idle session on and off in paired windows."""
    from bpf_cost import bpf_stats
    from paired_bench import pair_up, ratio, ratio_interval, run_windows

    from flowscope.lab.netns import inside
    from flowscope.observer.datapath import Datapath
    from flowscope.observer.datapath.bpfsys import BPF_TCX_EGRESS, BPF_TCX_INGRESS, prog_info, tcx_link_create
    from flowscope.observer.datapath.pathtrace import TRACEPOINTS, PathTracer
    from flowscope.observer.trace.filter import compile_filter

    node = "node1"
    compiled = compile_filter([], IDLE, NoPods())
    hooks = (("from_container", BPF_TCX_INGRESS), ("to_container", BPF_TCX_EGRESS))
    with Datapath() as dp:
        dp.update_config(aggregation=3, report_flags=7)
        links: list[int] = []
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
        tracer = PathTracer(dp)
        reader, done = dp.reader(), threading.Event()

        def read_events() -> None:  # the flows' ring, kept from filling as the agent would
            while not done.is_set():
                reader.read_batch(100)

        drain = threading.Thread(target=read_events, daemon=True)
        drain.start()

        switches: list[float] = []

        class Session:
            """The idle session started (slot, tracepoints) or stopped, as the agent does it; how long each took."""

            def __init__(self, _: Lab) -> None:
                pass

            def set(self, on: bool) -> None:
                t0 = time.monotonic()
                if on:
                    tracer.start(0, 1, COUNT, compiled.encoded(), len(compiled.terms))
                else:
                    tracer.stop(0)
                switches.append(time.monotonic() - t0)

            def close(self) -> None:
                tracer.stop(0)

        try:
            with bpf_stats():
                windows = run_windows(lab, "UDP-64", seconds, window, settle, Session)
                hop_programs = [prog_info(dp.bpf.funcs[name.encode()].fd) for name in TRACEPOINTS.values()]
        finally:
            done.set()
            drain.join(5)
            tracer.close()
            for link in links:
                os.close(link)
    pairs = pair_up(windows)
    low, high = ratio_interval(pairs)
    on = sum(p[0] for p in pairs) / len(pairs)
    off = sum(p[1] for p in pairs) / len(pairs)
    runs, run_ns = sum(p.run_cnt for p in hop_programs), sum(p.run_time_ns for p in hop_programs)
    on_seconds = window * sum(w.on for w in windows)
    return [
        "| traffic | ratio idle session / no session (90% interval) | pairs of windows | mean on / off "
        "| tracepoint programs' runs per packet | ns per run |",
        "|---|---|---|---|---|---|",
        f"| UDP 64 B | **{ratio(pairs):.3f}** ({low:.3f} – {high:.3f}) | {len(pairs):,} "
        f"| {on:,.0f} / {off:,.0f} packets/s | {runs / on_seconds / on:.1f} | {run_ns / max(runs, 1):.0f} |",
        "",
        f"One iperf3 run of {seconds:g} s, this checkout's datapath on node1's hooks at medium (no agent); every "
        f"{window:g} s a session `{IDLE}` started (slot live, the five kernel tracepoints attached) or stopped; "
        "runs and ns of the tracepoints' BPF programs (hop_*) from the kernel's BPF statistics, per packet "
        "delivered while on (the perf tracepoint's own work around each run is not in them); the "
        f"first {settle:g} s after each switch not counted (a switch took {statistics.median(switches) * 1e3:.1f} ms, "
        f"median; at most {max(switches) * 1e3:.1f} ms).",
    ]


@dataclass(frozen=True)
class Followed:
    """One session of the `rate` part."""

    sent: float  # packets/s iperf3 sent
    picked: int  # SessionEnded.packets
    hops: int  # hops received
    lost: int  # SessionEnded.hops_lost: the datapath's ring and the agent's queue together
    spread: float  # seconds from the first hop received to the last
    agent_cpu: float  # the agent's CPU seconds meanwhile


def follow(lab: Lab, agent_pid: int, pps: int) -> Followed:
    """One session of COUNT packets on node1's agent, through its gRPC Tracer, while iperf3 sends 64-byte
    datagrams from pod to pod at `pps`. Read with a plain gRPC client that only counts, so that no client's
    work competes with the agent for the two CPUs."""
    import grpc
    from google.protobuf.duration_pb2 import Duration

    from common import IPERF_PORT, cpu_seconds
    from flowscope.api.trace import trace_pb2, trace_pb2_grpc

    request = trace_pb2.TraceRequest(pcap_filter=RATE_FILTER, count=COUNT, duration=Duration(seconds=60))
    seconds = max(2.0, 2 * COUNT / pps)
    iperf = ["iperf3", "-c", lab.pod("server").ipv4, "-p", str(IPERF_PORT), "-u", "-l", "64", "-A", "0,1", "-J"]
    iperf += ["-b", str(pps * 64 * 8), "-t", f"{seconds:g}"]
    srv = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("server"), "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client: subprocess.Popen[str] | None = None
    try:
        with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
            stream = trace_pb2_grpc.TracerStub(channel).Trace(request, timeout=seconds + 120)
            if next(stream).WhichOneof("event") != "started":
                raise RuntimeError("the agent did not start a session")
            cpu0 = cpu_seconds(agent_pid)
            time.sleep(0.3)  # the iperf3 server's listening
            client = subprocess.Popen(
                ["ip", "netns", "exec", lab.netns("client"), *iperf], stdout=subprocess.PIPE, text=True
            )
            times: list[float] = []
            ended = trace_pb2.SessionEnded()
            for event in stream:
                if event.HasField("hop"):
                    times.append(time.monotonic())
                elif event.HasField("ended"):
                    ended = event.ended
            cpu = cpu_seconds(agent_pid) - cpu0
        out, _ = client.communicate(timeout=seconds + 30)
    finally:
        for proc in (client, srv):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    total = json.loads(out)["end"]["sum"]
    spread = times[-1] - times[0] if times else 0.0
    return Followed(total["packets"] / total["seconds"], ended.packets, len(times), ended.hops_lost, spread, cpu)


def rate(lab: Lab, rates: Sequence[int], repeats: int) -> list[str]:
    """The `rate` part's table: sessions of COUNT packets through the agent at each sending rate."""
    from common import agent

    lines = [
        "| rate asked (packets/s) | rate sent | packets picked | hops received | hops per packet | hops lost "
        "| first to last hop | hops/s received | agent CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    clean: dict[int, bool] = {}
    with agent(lab, "medium") as pid:
        for pps in rates:
            for _ in range(repeats):
                run = follow(lab, pid, pps)
                clean[pps] = clean.get(pps, True) and run.lost == 0 and run.picked >= COUNT
                lines.append(
                    f"| {pps:,} | {run.sent:,.0f} | {run.picked:,} | {run.hops:,} | "
                    f"{run.hops / max(run.picked, 1):.1f} | {run.lost:,} | {run.spread:.2f} s "
                    f"| {run.hops / max(run.spread, 1e-9):,.0f} | {run.agent_cpu:.2f} s |"
                )
                print(lines[-1], flush=True)
    best = max((pps for pps, ok in clean.items() if ok), default=0)
    lines += [
        "",
        f"Largest rate asked with no hop lost in any of its sessions: **{best:,} packets/s**. Each row: one session "
        f"`{RATE_FILTER}`, count {COUNT}, on node1's agent (monitor aggregation medium), read through its gRPC "
        "Tracer by a client that only counts, while iperf3 sends 64-byte datagrams client → server pod at the "
        "rate asked (iperf3 paces in 1 ms bursts). Hops lost: SessionEnded.hops_lost (the datapath's hop ring, "
        f"{ring_kib()} KiB, and the agent's queue). Agent CPU: its user "
        "+ system time from the session's start to its end.",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="cost,flood,rate", help="which parts: cost, flood, rate (all)")
    parser.add_argument("--before", type=Path, help="cost: a checkout without session support, measured beside")
    parser.add_argument("--rounds", type=int, default=400, help="cost: rounds per program (400)")
    parser.add_argument("--repeat", type=int, default=100, help="cost: packets per run (100: the hops fit the ring)")
    parser.add_argument("--seconds", type=float, default=120.0, help="flood: length of the iperf3 run (120)")
    parser.add_argument("--window", type=float, default=0.1, help="flood: seconds a session is on or off (0.1)")
    parser.add_argument("--settle", type=float, default=0.02, help="flood: seconds after a switch not counted (0.02)")
    parser.add_argument("--rates", default="500,1000,2000,5000,10000,20000", help="rate: packets/s to try")
    parser.add_argument("--repeats", type=int, default=2, help="rate: sessions per rate (2)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.sessions)
        return 0
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if parts - {"cost", "flood", "rate"} or not parts:
        parser.error(f"--parts: cost, flood or rate, not {args.parts!r}")
    if args.before is not None:
        link_tree(args.before.resolve())  # refused in words before any worker starts
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: the lab and workers go

    sections: list[str] = []
    if "cost" in parts:
        table = cost(args.before.resolve() if args.before else None, args.rounds, args.repeat)
        sections += ["Cost per packet and per tracked hop (BPF_PROG_TEST_RUN):", "", *table, ""]
    if parts & {"flood", "rate"}:
        from flowscope.lab import Lab

        with Lab(f"tb{os.getpid()}") as lab:
            lab.up(traffic=False, agent=False)
            if "flood" in parts:
                table = flood(lab, args.seconds, args.window, args.settle)
                sections += ["A session matching nothing, on real traffic:", "", *table, ""]
            if "rate" in parts:
                rates = [int(x) for x in args.rates.split(",") if x.strip()]
                table = rate(lab, rates, args.repeats)
                sections += ["The largest packet rate a session follows without losing hops:", "", *table, ""]
    report = "\n".join(sections)
    print(report)
    if args.write:
        from common import update_results

        command = "sudo .venv/bin/python bench/trace_bench.py " + " ".join(sys.argv[1:])
        update_results(
            "Packet-path sessions (issue 12)", f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\n{report}"
        )
    return 0


def ring_kib() -> int:
    """The hop ring's size (trace.h), for the rate part's description."""
    from flowscope.observer.datapath.c_source import header_define

    return header_define("trace.h", "FS_PATH_RINGBUF_PAGES") * 4


if __name__ == "__main__":
    raise SystemExit(main())
