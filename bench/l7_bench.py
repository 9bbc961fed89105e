"""What L7 visibility without a proxy costs (issue 14, item 7): the datapath on the packets it does not capture,
the agent's CPU per DNS and per HTTP message, and the largest rates it takes without losing a message.

    .venv/bin/python bench/l7_bench.py [--parts datapath,flood,agent,rate] [--before CHECKOUT] [--write]

Four parts (all but flood by default):

datapath  Per packet, with BPF_PROG_TEST_RUN, L7 capture off and on taken in turns (a fraction of a millisecond
          each, so both meet the same speed of this machine, whose CPUs change speed by up to two times within a
          second: docs/reference/machine.md). Off: the l7_ports map filled with the default ports but the runtime
          bit l7_active 0, which is all the datapath tests when no port is configured; on: l7_active 1. The same
          config write goes before every call of both. Packets: the ACK with 10 bytes of an established TCP
          connection to a port that is no L7 port, a UDP datagram of 32 bytes to another, each way (from_container
          the client's packet, to_container the reply), and a DNS query and its response, which capture on
          copies into the l7_events ring (their row is the cost of an L7 packet; every run's record is checked
          to arrive). Figures: the kernel's mean per run of a call with `--repeat` runs (warm), the median over
          rounds of on − off with a 90% bootstrap interval.
flood     The whole datapath before L7 (`--before`: a checkout of 3ea3fae, `git worktree add` and its
          scripts/setup) against this one with capture on, on a real 64-byte UDP flood: bench/ab_bench.py's
          workers and paired windows.
agent     A one-node lab and its agent at its default settings (monitor aggregation medium, L7 on the default
          ports). A load generator in the client pod (this file, `--load`): DNS queries over one UDP socket to
          the coredns pod at a fixed rate, reading the answers; or HTTP/1.1 GETs on keep-alive connections to the
          web pod, one request at a time on each. Windows of `--seconds` take turns: idle, DNS, idle, HTTP, for
          `--agent-rounds` rounds. A load window's agent CPU (cpu_seconds) from just before the generator starts
          until the agent has stored everything (its seen_flows no longer grows), minus the idle CPU rate of the
          neighbouring idle window over the same time, divided by the L7 flows the agent serves for the window
          (GetFlows with -t l7 and since/until, after the CPU was read).
rate      The same lab and agent: DNS queries, then HTTP requests, at rising rates (`--dns-rates`,
          `--http-rates`), each `--repeats` times, until a message was lost (the agent's kernel-buffer and queue
          counters grew, or its L7 message counter grew by less than the messages exchanged) or the generator or
          the lab's server could not keep up with the rate (said in the table).

Everything it makes (the lab's namespaces, its agent and servers, the load generator) goes when it ends, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowscope.lab import Lab

HERE = Path(__file__).resolve()
TITLE = "L7 without a proxy (issue 14)"
PARTS = ("datapath", "flood", "agent", "rate")
FS_EVENT_L7 = 129  # Cilium's MessageTypeAccessLog: an L7 flow
DNS_NAME = "web.web.svc.lab"
HTTP_PATH = "/"
LOST = "**lost**"
LOAD_NAMES = {"dns": "DNS", "http": "HTTP", "both": "DNS and HTTP at once"}
HTTP_CONNECTIONS = 4  # rate: keep-alive connections, one request outstanding on each

# datapath: the test packets' addresses (loopback, the test runs' device, is the client pod's endpoint) and ports
CLIENT, PEER = "10.0.1.5", "10.0.2.9"
TCP_PORT, UDP_PORT, DNS_PORT = 9000, 9001, 53  # 9000, 9001: no L7 port (the default L7 ports: 53, 80, 8080, 443)
FLOOD_COMMAND = ".venv/bin/python bench/l7_bench.py --parts flood --before <a checkout of 3ea3fae>"


def dns_query(ident: int, name: str = DNS_NAME, qtype: int = 1) -> bytes:
    """A DNS query (recursion desired) for one name, as a stub resolver sends it."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.strip(".").split("."))
    return struct.pack("!HHHHHH", ident & 0xFFFF, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def dns_response(query: bytes, address: str) -> bytes:
    """The answer to `query`: one A record, TTL 30, its name a pointer to the question's."""
    ident = query[:2]
    answer = struct.pack("!HHHIH4s", 0xC00C, 1, 1, 30, 4, socket.inet_aton(address))
    return ident + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + query[12:] + answer


# ---------------------------------------------------------------------------------------------------------------
# datapath


@dataclass(frozen=True)
class TestPacket:
    label: str
    program: str
    opening: bytes  # sent once first, so the measured packet belongs to an established connection
    measured: bytes
    captured: bool  # whether capture on copies it into l7_events


def _test_packets() -> list[TestPacket]:
    sys.path[:0] = [str(HERE.parents[1] / "tests" / "datapath")]
    from dp_packets import ACK, ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, SYN, eth, ipv4, tcp, udp

    def tcp_packet(src: str, sport: int, dst: str, dport: int, flags: int, payload: bytes = b"") -> bytes:
        return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_TCP, tcp(sport, dport, flags, payload)))

    def udp_packet(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
        return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_UDP, udp(sport, dport, payload)))

    tcp_out = tcp_packet(CLIENT, 40001, PEER, TCP_PORT, ACK, bytes(10))
    tcp_back = tcp_packet(PEER, TCP_PORT, CLIENT, 40001, ACK, bytes(10))
    udp_out = udp_packet(CLIENT, 40002, PEER, UDP_PORT, bytes(32))
    udp_back = udp_packet(PEER, UDP_PORT, CLIENT, 40002, bytes(32))
    query = dns_query(7)
    dns_out = udp_packet(CLIENT, 40003, PEER, DNS_PORT, query)
    dns_back = udp_packet(PEER, DNS_PORT, CLIENT, 40003, dns_response(query, PEER))
    return [
        TestPacket(
            f"TCP ACK, 10 bytes, port {TCP_PORT}",
            "from_container",
            tcp_packet(CLIENT, 40001, PEER, TCP_PORT, SYN),
            tcp_out,
            False,
        ),
        TestPacket(f"TCP ACK, 10 bytes, port {TCP_PORT} (reply)", "to_container", tcp_back, tcp_back, False),
        TestPacket(f"UDP, 32 bytes, port {UDP_PORT}", "from_container", udp_out, udp_out, False),
        TestPacket(f"UDP, 32 bytes, port {UDP_PORT} (reply)", "to_container", udp_back, udp_back, False),
        TestPacket("DNS query, udp/53", "from_container", dns_out, dns_out, True),
        TestPacket("DNS response, udp/53 (reply)", "to_container", dns_back, dns_back, True),
    ]


def datapath_cost(rounds: int, repeat: int) -> list[str]:
    """The `datapath` part's table."""
    from trace_bench import median_interval

    from flowscope.common.l7_ports import DEFAULT_L7_PORTS, parse_l7_ports
    from flowscope.observer.datapath import Datapath, DatapathConfig
    from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run

    packets = _test_packets()
    lines = [
        "| packet | program | ns per packet, L7 off (median) | L7 on (median) | on − off: ns (90% interval) "
        "| L7 records (on) |",
        "|---|---|---|---|---|---|",
    ]
    with Datapath(DatapathConfig(ring_buffer_pages=1024)) as dp:
        dp.set_endpoint(1, 7, 5555)
        dp.update_config(aggregation=3, report_flags=7)
        dp.set_l7_ports(parse_l7_ports(DEFAULT_L7_PORTS))
        events, l7_events = dp.reader(), dp.l7_reader()
        for packet in packets:  # the connections exist from here on
            dp.update_config(l7_active=0)
            if prog_test_run(dp.program_fd(packet.program), packet.opening).retval != TC_ACT_OK:
                raise RuntimeError(f"{packet.label}: the opening packet was not passed")
        events.read_batch(0)
        lost_before = sum(dp.l7_lost_counts())
        for packet in packets:
            fd = dp.program_fd(packet.program)
            ns: dict[bool, list[float]] = {False: [], True: []}
            records = 0
            for i in range(rounds):
                for on in (i % 2 == 0, i % 2 != 0):  # each goes first in turn
                    dp.update_config(l7_active=int(on))  # the same map write before each
                    result = prog_test_run(fd, packet.measured, repeat=repeat)
                    if result.retval != TC_ACT_OK:
                        raise RuntimeError(f"{packet.label}: verdict {result.retval}")
                    ns[on].append(result.duration_ns)
                    if on:
                        records += len(l7_events.read_batch(0))
                events.read_batch(0)
            if records != (rounds * repeat if packet.captured else 0):
                raise RuntimeError(
                    f"{packet.label}: {records} L7 records, not {rounds * repeat if packet.captured else 0}"
                )
            diffs = [a - b for a, b in zip(ns[True], ns[False], strict=True)]
            low, high = median_interval(diffs)
            lines.append(
                f"| {packet.label} | {packet.program} | {statistics.median(ns[False]):.1f} "
                f"| {statistics.median(ns[True]):.1f} | **{statistics.median(diffs):+.1f}** ({low:+.1f} – {high:+.1f}) "
                f"| {records:,} |"
            )
            print(lines[-1], flush=True)
        lost = sum(dp.l7_lost_counts()) - lost_before
    lines += [
        "",
        f"{rounds} rounds per packet, each running L7 off and on once (the first going round); a run: one call of "
        f"BPF_PROG_TEST_RUN with repeat {repeat}, the kernel's mean per run (whole ns), warm. Off: the l7_ports "
        "map filled with the default ports (udp/53, tcp/53, tcp/80, tcp/8080, tcp/443), l7_active 0; on: "
        "l7_active 1, the agent's default. Monitor aggregation medium; the packets belong to connections opened "
        "before the rounds. The difference column is the median over rounds of (on − off) with a 90% bootstrap "
        f"interval. L7 records: what the on runs put in l7_events, read back ({lost} lost: the ring was read after "
        "every call). The figure before L7 is the off column (capture off skips every L7 step: one test of "
        f"l7_active); the whole datapath before L7 (3ea3fae) against after, on a real flood: `{FLOOD_COMMAND}`.",
    ]
    return lines


def flood(before: Path, seconds: float, window: float) -> list[str]:
    """The `flood` part's line: bench/ab_bench.py's paired windows, this checkout with L7 capture on (l7_active
    1: for a packet on no L7 port, the same work as with the default ports, since l7_ports is an array looked up
    by the packet's ports) against `before` (3ea3fae: no L7 code)."""
    from ab_bench import DEVICE_HOOKS, ENDPOINT_HOOKS, Swap, Worker
    from paired_bench import pair_up, ratio, ratio_interval, run_windows

    from flowscope.lab import Lab
    from flowscope.lab.netns import inside

    with Lab(f"l7f{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        with inside(lab.netns("node1")):
            pods = [pod for pod in lab.pods if pod.node == "node1"]
            endpoints = [(socket.if_nametoindex(pod.ifname), 100 + i, 5000 + i) for i, pod in enumerate(pods)]
            hooks = [(ifindex, kind, name) for ifindex, _, _ in endpoints for name, kind in ENDPOINT_HOOKS]
            hooks += [(socket.if_nametoindex("eth0"), kind, name) for name, kind in DEVICE_HOOKS]
        config = {"aggregation": 3, "report_flags": 7}
        after = Worker(HERE.parents[1], {"config": {**config, "l7_active": 1}, "endpoints": endpoints})
        earlier = Worker(before.resolve(), {"config": config, "endpoints": endpoints})
        try:
            windows = run_windows(
                lab, "UDP-64", seconds, window, 0.01, lambda _: Swap(hooks, after.programs, earlier.programs)
            )
        finally:
            lost = after.close(), earlier.close()
    pairs = pair_up(windows)
    low, high = ratio_interval(pairs)
    on = sum(p[0] for p in pairs) / len(pairs)
    off = sum(p[1] for p in pairs) / len(pairs)
    return [
        "| traffic | this checkout, L7 on / 3ea3fae (90% interval) | pairs of windows | packets/s, after / before "
        "| events lost |",
        "|---|---|---|---|---|",
        f"| UDP, 64-byte datagrams, port 5201 | **{ratio(pairs):.4f}** ({low:.4f} – {high:.4f}) | {len(pairs):,} "
        f"| {on:,.0f} / {off:,.0f} | {lost[0]} / {lost[1]} |",
        "",
        f"One iperf3 flood of {seconds:g} s client pod → server pod, one-node lab, no agent; both checkouts' "
        f"datapaths loaded (bench/ab_bench.py's workers) and node1's hooks switched between them every {window:g} s "
        "(BPF_LINK_UPDATE); packets delivered into the server pod per window, the first 0.01 s after a switch not "
        "counted. This checkout at medium with l7_active 1 (L7 capture on; no packet of the flood is on an L7 "
        f"port), {before.name} = 3ea3fae, the parent of the L7 work. Ratio of the sums over pairs of "
        "neighbouring windows, 90% bootstrap interval over pairs.",
    ]


# ---------------------------------------------------------------------------------------------------------------
# the load generator (run inside the client pod: `--load dns|http`)


def dns_load(address: str, rate: float, seconds: float) -> dict[str, float]:
    """Queries at `rate` per second over one UDP socket (a stub resolver's: one port, ids counting up), reading
    the answers as they come; after the last query, answers are waited for up to a second."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect((address, 53))
    sock.setblocking(False)
    queries = [dns_query(ident) for ident in range(65536)]
    sent = answered = 0

    def read() -> None:
        nonlocal answered
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                return
            answered += 1

    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate) + 1
        while sent < due:
            try:
                sock.send(queries[sent & 0xFFFF])
            except BlockingIOError:
                break
            sent += 1
        read()
        wait = start + sent / rate - time.monotonic()
        if wait > 0:
            select_readable(sock, min(wait, end - time.monotonic()))
    took = time.monotonic() - start
    deadline = time.monotonic() + 1.0
    while answered < sent and time.monotonic() < deadline:
        select_readable(sock, 0.05)
        read()
    return {"target": rate, "sent": sent, "answered": answered, "seconds": took}


def select_readable(sock: socket.socket, timeout: float) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        sel.select(max(0.0, timeout))


class HttpConnection:
    """One keep-alive connection: at most one request outstanding; its responses parsed by Content-Length."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_connection((address, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.busy = False
        self.closing = False  # the server said it closes after this response

    def complete(self) -> bool:
        """Whether the buffer holds the whole response; if so it is taken out of it."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(self.buffer[:head_end]).decode("latin-1").lower()
        match = re.search(r"^content-length:\s*(\d+)", head, re.MULTILINE)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < head_end + 4 + length:
            return False
        del self.buffer[: head_end + 4 + length]
        self.closing = head.startswith("http/1.0") or "connection: close" in head
        return True


def http_load(address: str, port: int, rate: float, seconds: float, connections: int) -> dict[str, float]:
    """GETs at `rate` per second over `connections` keep-alive connections, one request outstanding on each (a
    request that finds every connection busy waits: the achieved rate says so); after the last request,
    responses are waited for up to two seconds. A connection the server closes is opened again."""
    request = f"GET {HTTP_PATH} HTTP/1.1\r\nHost: web.web.svc.lab\r\nUser-Agent: l7-bench\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    idle: deque[HttpConnection] = deque()
    reopened = 0

    def open_one() -> None:
        conn = HttpConnection(address, port)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        idle.append(conn)

    for _ in range(connections):
        open_one()
    sent = answered = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now < end:
            due = int((now - start) * rate) + 1
            while sent < due and idle:
                conn = idle.popleft()
                conn.sock.send(request)  # far smaller than an empty socket buffer
                conn.busy = True
                sent += 1
            timeout = max(0.0, min(start + sent / rate, end) - time.monotonic()) if idle else 0.05
        elif answered >= sent or now > end + 2.0:
            break
        else:
            timeout = 0.05
        for key, _ in sel.select(timeout):
            conn = key.data
            data = conn.sock.recv(65536)
            # ACK at once: the lab's server writes a response's head and body apart, and Nagle holds the body
            # back until the head is acknowledged (40 ms of delayed ACK a request otherwise)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            conn.buffer += data
            while conn.busy and conn.complete():
                conn.busy = False
                answered += 1
            if not data or (conn.closing and not conn.busy):
                sel.unregister(conn.sock)
                conn.sock.close()
                if conn in idle:
                    idle.remove(conn)
                reopened += 1
                open_one()
            elif not conn.busy and conn not in idle:
                idle.append(conn)
    took = min(time.monotonic(), end) - start
    return {"target": rate, "sent": sent, "answered": answered, "seconds": took, "reopened": reopened}


# ---------------------------------------------------------------------------------------------------------------
# agent and rate: a lab, its agent, the load generator in the client pod


@dataclass(frozen=True)
class Window:
    kind: str  # "dns", "http" or "idle"
    target: float  # the rate asked for (messages are twice it: requests and responses)
    sent: int
    answered: int
    wall: float  # seconds from just before the generator started until the agent had stored everything
    cpu: float  # the agent's CPU seconds in that time
    counts: Counts  # what the agent's counters grew by in the window
    l7_flows: int  # L7 flows GetFlows found in the window (counted only where asked; else 0)
    generator_seconds: float

    @property
    def messages(self) -> int:
        """The L7 messages exchanged: each request and each response."""
        return self.sent + self.answered


@dataclass(frozen=True)
class Counts:
    """The agent's counters (ServerStatus), or how much they grew."""

    seen_flows: int
    kernel_buffer: int  # events lost: no room in the datapath's ring buffers (l7_events' included)
    agent_queue: int  # events lost: read but not stored
    l7_messages: int  # DNS and HTTP messages parsed and stored, one L7 flow each (flowscope_l7)
    l7_unpaired: int  # responses without their request (no latency)
    l7_dropped: int  # requests forgotten before their response came

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


class Bench:
    """The lab, its agent (`pid`) and the servers the load goes to."""

    def __init__(self, lab: Lab, pid: int) -> None:
        self.lab, self.pid = lab, pid

    def status(self) -> Counts:
        from common import server_status

        status = server_status(self.lab)
        lost, l7 = status.flowscope_lost, status.flowscope_l7
        return Counts(status.seen_flows, lost.kernel_buffer, lost.agent_queue, l7.messages, l7.unpaired, l7.dropped)

    def settled(self, timeout: float = 30.0) -> Counts:
        """Wait until the agent has stored what it was sent (seen_flows unchanged over 0.3 s); its status."""
        last = self.status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.status()
            if now.seen_flows == last.seen_flows:
                return now
            last = now
        raise RuntimeError(f"the agent's seen_flows still grew after {timeout:g} s")

    def store(self) -> tuple[int, int, int]:
        """The L7 store: (entries in it, entries it holds, bytes they take)."""
        from common import server_status

        l7 = server_status(self.lab).flowscope_l7
        return l7.stored, l7.capacity, l7.memory_bytes

    def l7_flows(self, since: float, until: float) -> int:
        """The L7 flows the agent serves between since and until (wall clock)."""
        import grpc
        from google.protobuf.field_mask_pb2 import FieldMask
        from google.protobuf.timestamp_pb2 import Timestamp

        from flowscope.api.flow import flow_pb2
        from flowscope.api.observer import observer_pb2, observer_pb2_grpc

        start, stop = Timestamp(), Timestamp()
        start.FromNanoseconds(int(since * 1e9))
        stop.FromNanoseconds(int(until * 1e9))
        request = observer_pb2.GetFlowsRequest(
            since=start,
            until=stop,
            whitelist=[flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=FS_EVENT_L7)])],
            field_mask=FieldMask(paths=["l7.type"]),
        )
        with grpc.insecure_channel(f"unix://{self.lab.agent_socket('node1')}") as channel:
            responses = observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=300)
            return sum(response.HasField("flow") for response in responses)

    def load(self, kind: str, rate: float, seconds: float, connections: int = 1, count_flows: bool = True) -> Window:
        """One window of `kind` load ("idle": none, the same length) and what the agent did in it; with
        `count_flows`, the L7 flows it serves for the window are counted too (after its CPU was read)."""
        from common import cpu_seconds

        before = self.status()
        since, t0, cpu0 = time.time(), time.monotonic(), cpu_seconds(self.pid)
        if kind == "idle":
            time.sleep(seconds)  # an idle window is a measurement of the agent doing nothing, not a wait
            report = {"sent": 0, "answered": 0, "seconds": seconds}
        else:
            report = self.generate(kind, rate, seconds, connections)
        after = self.settled()
        cpu1, t1, until = cpu_seconds(self.pid), time.monotonic(), time.time()
        flows = self.l7_flows(since, until) if kind != "idle" and count_flows else 0
        return Window(
            kind,
            rate,
            int(report["sent"]),
            int(report["answered"]),
            t1 - t0,
            cpu1 - cpu0,
            after - before,
            flows,
            float(report["seconds"]),
        )

    def generate(self, kind: str, rate: float, seconds: float, connections: int) -> dict[str, float]:
        """Run the load generator in the client pod ("both": a DNS and an HTTP one at once, each at `rate`); its
        report (both: their sums)."""
        from flowscope.lab.netns import exec_argv

        procs = []
        for load in ("dns", "http") if kind == "both" else (kind,):
            target = self.lab.pod("coredns" if load == "dns" else "web").ipv4
            argv = [sys.executable, str(HERE), "--load", load, "--target", target, "--rate", f"{rate:g}"]
            argv += ["--seconds", f"{seconds:g}", "--connections", str(connections if load == "http" else 1)]
            procs.append(subprocess.Popen(exec_argv(self.lab.netns("client"), argv), stdout=subprocess.PIPE, text=True))
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode:
                raise RuntimeError(f"the {kind} load generator failed (exit {proc.returncode})")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return {
            "sent": sum(report["sent"] for report in reports),
            "answered": sum(report["answered"] for report in reports),
            "seconds": max(report["seconds"] for report in reports),
        }


@contextmanager
def default_agent(lab: Lab, start_timeout: float = 90.0) -> Iterator[int]:
    """The lab's agent on node1 (its pid) at the agent's own defaults: a lab starts its agents at monitor
    aggregation none, so it is set back to medium. It may start slowly on a machine that other work keeps busy,
    hence a longer wait than common.agent's."""
    from common import FLOWSCOPE, NODE

    (daemon,) = lab.start_agents(timeout=start_timeout)
    try:
        server = f"unix://{lab.agent_socket(NODE)}"
        config = [FLOWSCOPE, "config", "set", "monitor-aggregation", "medium", "--server", server]
        subprocess.run(config, check=True, capture_output=True)
        yield daemon.pid
    finally:
        lab.stop(daemon)


def agent_cost(bench: Bench, rounds: int, seconds: float, dns_rate: float, http_rate: float) -> list[str]:
    """The `agent` part's table."""
    loads = (("dns", dns_rate), ("http", http_rate))
    for kind, rate in loads:
        bench.load(kind, rate, 2.0)  # the first use of every path of the agent, not measured
    busy: dict[str, list[Window]] = {"dns": [], "http": []}
    idle: dict[str, list[Window]] = {"dns": [], "http": []}
    per_message: dict[str, list[float]] = {"dns": [], "http": []}
    for _ in range(rounds):
        for kind, rate in loads:
            quiet, load = bench.load("idle", 0, seconds), bench.load(kind, rate, seconds)
            idle[kind].append(quiet)
            busy[kind].append(load)
            extra = load.cpu - quiet.cpu / quiet.wall * load.wall
            per_message[kind].append(extra / max(load.l7_flows, 1) * 1e6)
            print(f"{kind}: {load}, idle {quiet.cpu:.2f} s in {quiet.wall:.1f} s", flush=True)
    lines = [
        "| load | rate asked | L7 messages a window (requests + responses) | L7 flows served a window "
        "| agent CPU: load window | idle window | **agent CPU per L7 message** (median, range) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"dns": "DNS over UDP, one socket", "http": "HTTP/1.1 GET, one keep-alive connection"}
    for kind, rate in loads:
        messages = statistics.median(w.messages for w in busy[kind])
        served = statistics.median(w.l7_flows for w in busy[kind])
        load_cpu = statistics.median(w.cpu / w.wall * 100 for w in busy[kind])
        idle_cpu = statistics.median(w.cpu / w.wall * 100 for w in idle[kind])
        us = per_message[kind]
        lines.append(
            f"| {names[kind]} | {rate:g}/s | {messages:,.0f} | {served:,.0f} | {load_cpu:.1f}% | {idle_cpu:.1f}% "
            f"| **{statistics.median(us):.0f} µs** ({min(us):.0f} – {max(us):.0f}) |"
        )
    lines += [
        "",
        f"{rounds} rounds of four {seconds:g}-s windows (idle, DNS, idle, HTTP) after a 2-s warm-up of each load, "
        "one-node lab, the agent at its defaults (monitor aggregation medium, L7 on the default ports, redaction "
        f"on). DNS: queries for {DNS_NAME}. A from the client pod to the coredns pod (the lab's DNS server) over "
        f"one UDP socket; HTTP: GET {HTTP_PATH} from the client pod to the web pod (the lab's web server), one "
        "request at a time on one keep-alive connection. Agent CPU per message = (the load window's agent CPU − "
        "the idle window's CPU rate × the load window's length) / the L7 flows served for it; a window runs from "
        "just before the generator starts until the agent's seen_flows stops growing. CPU: the agent process's "
        "user + system time (all its threads, 10 ms ticks) over wall time. L7 flows: GetFlows with event type "
        "129 (`-t l7`) and since/until the window, read after the CPU was. Medians over the rounds.",
    ]
    return lines


def rate_limits(
    bench: Bench,
    dns_rates: Sequence[float],
    http_rates: Sequence[float],
    both_rates: Sequence[float],
    seconds: float,
    repeats: int,
) -> list[str]:
    """The `rate` part's table."""
    lines = [
        "| load | rate asked | achieved | L7 messages | stored by the agent | responses without their request "
        "| lost: kernel buffer, agent queue | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, str] = {}
    series = (("dns", dns_rates), ("http", http_rates), ("both", both_rates))
    for kind, rates in series:
        peak = 0.0  # the most responses/s a window without loss reached
        for rate in rates:
            results = [_rate_row(bench, kind, rate, seconds, lines)]
            while len(results) < repeats and not results[-1][0].startswith(LOST):
                results.append(_rate_row(bench, kind, rate, seconds, lines))
            if any(result.startswith(LOST) for result, _ in results):
                break
            reached = max(achieved for _, achieved in results)
            if reached < peak * 1.05:
                break  # the generators and servers made no more than at the rate before: a higher one is not reached
            peak = reached
        if peak:
            best[kind] = f"{peak:,.0f}"
    store = bench.store()
    lines += [
        "",
        f"Each rate {repeats} times for {seconds:g} s, one-node lab, the agent at its defaults. DNS: one UDP "
        f"socket to the coredns pod (the lab's DNS server); HTTP: {HTTP_CONNECTIONS} keep-alive connections to the "
        "web pod (the lab's web server), one request outstanding on each; DNS and HTTP at once: both generators "
        "together, each at the rate (the node's two CPUs then also run two generators and two servers beside the "
        "agent). Achieved: responses received per second (a query the DNS server had no time for stays "
        "unanswered; the generator does not send it again). L7 messages: requests sent + responses received. "
        "Stored: what the agent's L7 counter (ServerStatus flowscope_l7.messages: parsed and stored, one L7 flow "
        "each) grew by in the window. Lost: the agent's counters over the window (kernel buffer: records the "
        "datapath's rings had no room for, l7_events' included; agent queue: events read but not stored); a "
        "window loses when they grew or fewer messages were stored than exchanged. The rows stop at the first "
        "rate with loss, or where the generators and the lab's servers made no more responses than at the rate "
        "before (they, not the agent, were the limit; a window they fell behind in on a busy machine does not "
        "stop the rows by itself). The L7 store after the runs: "
        f"{store[0]:,} of {store[1]:,} entries, {store[2] / 2**20:.1f} MiB. Largest rate reached without loss: "
        f"**DNS {best.get('dns', '—')} queries/s, HTTP {best.get('http', '—')} requests/s**; both at once: "
        f"{best.get('both', '—')} responses/s.",
    ]
    return lines


def _rate_row(bench: Bench, kind: str, rate: float, seconds: float, lines: list[str]) -> tuple[str, float]:
    """One window at `rate` (both: DNS and HTTP each at it), its row added to `lines`: (the verdict, responses
    per second)."""
    w = bench.load(kind, rate, seconds, HTTP_CONNECTIONS, count_flows=False)
    asked = rate * (2 if kind == "both" else 1)
    achieved = w.answered / w.generator_seconds
    missing = w.messages - w.counts.l7_messages
    if w.counts.kernel_buffer or w.counts.agent_queue or missing > 0:
        result = f"{LOST} {max(missing, 0):,} messages"
    elif w.sent < 0.9 * asked * seconds and kind == "http":  # a request waits for a connection whose answer came
        took = HTTP_CONNECTIONS / achieved * 1e3
        result = f"{HTTP_CONNECTIONS} connections carry no more: an answer took {took:.1f} ms"
    elif w.sent < 0.9 * asked * seconds:
        result = "the generators could not send as fast"
    elif achieved < 0.9 * asked:
        result = "the lab's servers could not answer as fast"
    else:
        result = "no loss"
    if w.answered < w.sent and result == "no loss":  # a UDP server drops what it has no time for: no L7 loss
        result += f" (the server answered {w.answered / w.sent:.1%})"
    each = " each" if kind == "both" else ""
    lines.append(
        f"| {LOAD_NAMES[kind]} | {rate:g}/s{each} | {achieved:,.0f}/s | {w.messages:,} | {w.counts.l7_messages:,} "
        f"| {w.counts.l7_unpaired:,} | {w.counts.kernel_buffer:,}, {w.counts.agent_queue:,} | {result} |"
    )
    print(lines[-1], flush=True)
    return result, achieved


# ---------------------------------------------------------------------------------------------------------------
# RESULTS.md: one section, a subsection per part, so parts run at different times keep each other's figures


SUBSECTIONS = {
    "datapath": "### Datapath cost of L7 capture (BPF_PROG_TEST_RUN)",
    "flood": "### The whole datapath before L7 and after, on a real flood",
    "agent": "### Agent CPU per L7 message",
    "rate": "### Largest rates without loss",
}


def merged(existing: str, blocks: dict[str, str]) -> str:
    """The section's body with the subsections of `blocks` replaced (or added) and the others kept, and what
    stands before the first subsection (a summary written by hand) left as it is."""
    first = re.search(r"^### ", existing, re.MULTILINE)
    preamble = existing[: first.start()].strip() if first else existing.strip()
    kept: dict[str, str] = {}
    for part, heading in SUBSECTIONS.items():
        match = re.search(rf"^{re.escape(heading)}\n.*?(?=^### |\Z)", existing, re.MULTILINE | re.DOTALL)
        if match:
            kept[part] = match.group(0).strip()
    kept.update({part: f"{SUBSECTIONS[part]}\n\n{block.strip()}" for part, block in blocks.items()})
    return "\n\n".join([*([preamble] if preamble else []), *(kept[part] for part in SUBSECTIONS if part in kept)])


def write_results(blocks: dict[str, str]) -> None:
    from common import RESULTS, update_results

    text = RESULTS.read_text() if RESULTS.exists() else ""
    match = re.search(rf"^## {re.escape(TITLE)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    update_results(TITLE, merged(match.group(1) if match else "", blocks))


# ---------------------------------------------------------------------------------------------------------------


def tree() -> str:
    """Which code ran: the commit, and whether the shared working tree had edits beyond it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE.parent)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=HERE.parent
    )
    return f"tree {head.stdout.strip()}" + (" with uncommitted edits" if dirty.stdout.strip() else "")


def rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="datapath,agent,rate", help="datapath, flood, agent, rate (all but flood)")
    parser.add_argument("--rounds", type=int, default=2000, help="datapath: rounds per packet (2000)")
    parser.add_argument("--repeat", type=int, default=100, help="datapath: runs a call (100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="agent: seconds a window; rate: at most (10)")
    parser.add_argument("--agent-rounds", type=int, default=3, help="agent: rounds of windows (3)")
    parser.add_argument("--dns-rate", type=float, default=500, help="agent: DNS queries/s (500)")
    parser.add_argument("--http-rate", type=float, default=500, help="agent: HTTP requests/s (500)")
    parser.add_argument("--dns-rates", default="500,1000,2000,3000,4000,6000,8000", help="rate: DNS queries/s tried")
    parser.add_argument("--http-rates", default="500,1000,2000,3000,4000,6000,8000", help="rate: HTTP requests/s tried")
    parser.add_argument("--before", type=Path, help="flood: a checkout of 3ea3fae (git worktree + scripts/setup)")
    parser.add_argument("--flood-seconds", type=float, default=120.0, help="flood: seconds of the flood (120)")
    parser.add_argument("--window", type=float, default=0.1, help="flood: seconds each checkout runs in turn (0.1)")
    parser.add_argument("--both-rates", default="2000,3000,4000", help="rate: each kind's rate, both at once")
    parser.add_argument("--repeats", type=int, default=2, help="rate: windows at each rate (2)")
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    # the load generator, run by the bench inside the client pod
    parser.add_argument("--load", choices=("dns", "http"), help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        generated = (
            dns_load(args.target, args.rate, args.seconds)
            if args.load == "dns"
            else http_load(args.target, 80, args.rate, args.seconds, args.connections)
        )
        print(json.dumps(generated))
        return 0
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts: some of {', '.join(PARTS)}, not {args.parts!r}")
    if "flood" in parts and args.before is None:
        parser.error("--parts flood needs --before (a checkout of 3ea3fae)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: the lab and processes go

    blocks: dict[str, str] = {}
    command = ".venv/bin/python bench/l7_bench.py " + " ".join(sys.argv[1:])
    stamp = f"Command: `{command.replace(' --write', '').strip()}` ({time.strftime('%Y-%m-%d')}, {tree()})"
    if "datapath" in parts:
        blocks["datapath"] = "\n".join([stamp, "", *datapath_cost(args.rounds, args.repeat)])
    if "flood" in parts:
        blocks["flood"] = "\n".join([stamp, "", *flood(args.before, args.flood_seconds, args.window)])
    if {"agent", "rate"} & set(parts):
        from flowscope.lab import Lab

        with Lab(f"l7b{os.getpid()}") as lab:
            lab.up(traffic=False, agent=False)
            with default_agent(lab) as pid:
                bench = Bench(lab, pid)
                run: dict[str, Callable[[], list[str]]] = {
                    "agent": lambda: agent_cost(bench, args.agent_rounds, args.seconds, args.dns_rate, args.http_rate),
                    "rate": lambda: rate_limits(
                        bench,
                        rates(args.dns_rates),
                        rates(args.http_rates),
                        rates(args.both_rates),
                        args.seconds,
                        args.repeats,
                    ),
                }
                for part in ("agent", "rate"):
                    if part in parts:
                        blocks[part] = "\n".join([stamp, "", *run[part]()])
    report = "\n\n".join(blocks.values())
    print(report)
    if args.write:
        write_results(blocks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
