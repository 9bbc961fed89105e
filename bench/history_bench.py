"""What the ClickHouse history costs and how fast it goes (issue 16).

    .venv/bin/python bench/history_bench.py ingest [--seconds 10] [--writers 1 3]
    .venv/bin/python bench/history_bench.py agent [--rate 100000] [--seconds 4] [--rounds 3] [--before CHECKOUT]
    .venv/bin/python bench/history_bench.py query [--flows-per-s 100]
    .venv/bin/python bench/history_bench.py encode [--flows 20000] [--rounds 5]

ingest: flows/s into ClickHouse from 1 and from 3 writers at once (each a process of its own, as three agents
  would be), made-up lab-like flows handed to ClickHouseWriter as fast as it takes them (batches of 10,000, one
  INSERT each); reported: flows stored per second, each writer's CPU per flow (encoding and sending) and
  ClickHouse's CPU per flow.
agent: a one-node lab's agent CPU per event with --export-clickhouse off and on (ClickHouse in node1's
  namespace), alternating per round, under bench/common.py's paced UDP flood of `--rate` events/s (monitor
  aggregation none); reported: µs of agent CPU per event, what the export adds, flows stored. `--before`: a
  checkout (`git worktree add` + its scripts/setup) whose agent stores too, as a third variant in the same rounds.
query: an hour of flows at `--flows-per-s` (the made-up flows of a lab's pods) stored, then `observe --history
  --since 1h` whole (-o jsonpb to /dev/null), a narrow filter that pushes down, one that does not, `--last
  100`, and `top --history`; reported: wall time, the CLI's CPU and ClickHouse's CPU, median of 3.

encode: the agent's rows made in memory, both ways, from the same lab-like records (tests/records.py: TCP both
  ways with varying ports, DNS over UDP, ICMP, at three observation points): as before (the exporter's
  GetFlowsResponse messages, then rows.row_binary of each) and from the record columns (record_rows.RecordRows,
  warm: its keys learnt in an earlier round); alternating rounds, the rows compared; reported: CPU µs per flow.

Every ClickHouse here is a fresh server of our own in a temporary folder (lab/history.py), stopped after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common import names
from flowscope.common.names import EVENT_LOST
from flowscope.lab.history import ClickHouse
from flowscope.observer.exporter.core import ExportSpec, Selection
from flowscope.observer.history.clickhouse import ClickHouse as Client
from flowscope.observer.history.clickhouse import ClickHouseError
from flowscope.observer.history.record_rows import RecordRows
from flowscope.observer.history.rows import row_binary
from flowscope.observer.history.writer import ClickHouseWriter, WriterOptions
from flowscope.observer.parser import FlowDecoder

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
PODS = [("default", "client"), ("default", "server"), ("web", "web"), ("web", "web2"), ("kube-system", "coredns")]


def made_up(count: int, start_ns: int, step_ns: int, seed: int = 0) -> list[observer_pb2.GetFlowsResponse]:
    """Flows shaped like a lab's: pod to pod, TCP/80, UDP/53 or ICMP, endpoints with labels and workloads."""
    responses = []
    for i in range(count):
        n = i + seed
        response = observer_pb2.GetFlowsResponse(node_name=f"node{1 + seed % 3}")
        response.time.FromNanoseconds(start_ns + i * step_ns)
        f = response.flow
        f.time.CopyFrom(response.time)
        f.uuid = f"{seed:04d}-{i:012d}-0000-0000-000000000000"
        f.node_name = response.node_name
        f.verdict = flow_pb2.DROPPED if n % 17 == 0 else flow_pb2.FORWARDED
        f.Type = flow_pb2.L3_L4
        f.event_type.type = 4
        src, dst = PODS[n % 5], PODS[(n // 5 + 1) % 5]
        f.IP.source, f.IP.destination, f.IP.ipVersion = f"10.244.0.{n % 5 + 2}", f"10.244.1.{n % 7 + 2}", 1
        if n % 3 == 0:
            f.l4.UDP.source_port, f.l4.UDP.destination_port = 30000 + n % 30000, 53
        elif n % 3 == 1:
            f.l4.TCP.source_port, f.l4.TCP.destination_port = 30000 + n % 30000, 80
            f.l4.TCP.flags.ACK = True
        else:
            f.l4.ICMPv4.type = 8
        for endpoint, (namespace, pod) in ((f.source, src), (f.destination, dst)):
            endpoint.namespace, endpoint.pod_name, endpoint.identity = namespace, f"{pod}-7d9f8", 1000 + len(pod)
            endpoint.labels.extend([f"k8s:app={pod}", f"k8s:io.kubernetes.pod.namespace={namespace}"])
            endpoint.workloads.add(name=pod, kind="Deployment")
        f.trace_observation_point = flow_pb2.TO_ENDPOINT
        f.traffic_direction = flow_pb2.INGRESS
        f.is_reply.value = n % 2 == 1
        f.Summary = "TCP Flags: ACK" if n % 3 == 1 else ""
        responses.append(response)
    return responses


def server_cpu(server: ClickHouse) -> float:
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def fresh_server(namespace: str | None = None) -> Iterator[ClickHouse]:
    with tempfile.TemporaryDirectory(prefix="history-bench-") as folder:
        server = ClickHouse.start(Path(folder), namespace=namespace, die_with_parent=True)
        try:
            yield server
        finally:
            server.stop()


# ingest


def _writer(url: str, seed: int, seconds: float, results: multiprocessing.Queue) -> None:
    batch = made_up(10_000, time.time_ns() - 3600 * 10**9, 1000, seed)
    writer = ClickHouseWriter(url, WriterOptions(max_rows=100_000))
    writer.export(batch[:1])
    writer.flush(30)  # the schema is in place before the clock starts
    cpu0, start, handed = time.process_time(), time.monotonic(), 0
    while time.monotonic() - start < seconds:
        if writer.pending < 50_000:  # as fast as it takes them, never over its buffer
            writer.export(batch)
            handed += len(batch)
        else:
            time.sleep(0.005)
    writer.flush(120)
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu0
    writer.close()
    results.put((writer.counts.delivered - 1, writer.counts.undelivered, elapsed, cpu))


def ingest(args: argparse.Namespace) -> None:
    rows = [
        "| writers | flows stored/s (all) | writer CPU µs/flow | ClickHouse CPU µs/flow | undelivered |",
        "|---|---|---|---|---|",
    ]
    for writers in args.writers:
        with fresh_server() as server:
            results: multiprocessing.Queue = multiprocessing.Queue()
            cpu0 = server_cpu(server)
            procs = [
                multiprocessing.Process(target=_writer, args=(server.url, seed, args.seconds, results))
                for seed in range(writers)
            ]
            for proc in procs:
                proc.start()
            done = [results.get(timeout=args.seconds + 300) for _ in procs]
            for proc in procs:
                proc.join()
            server_s = server_cpu(server) - cpu0
            count = int(Client.connect(server.url).execute("SELECT count() FROM flows"))
        delivered = sum(d[0] for d in done)
        wall = max(d[2] for d in done)
        rows.append(
            f"| {writers} | {delivered / wall:,.0f} | {statistics.mean(d[3] / max(1, d[0]) * 1e6 for d in done):.1f} |"
            f" {server_s / max(1, delivered) * 1e6:.1f} | {sum(d[1] for d in done)} |"
        )
        print(f"{writers} writer(s): {delivered:,} flows in {wall:.1f}s ({count:,} rows in the table)", flush=True)
    print("\n".join(rows))


# query


def _timed(argv: Sequence[str], server: ClickHouse) -> tuple[float, float, float, int]:
    """Wall s, CLI CPU s, ClickHouse CPU s, lines printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, start = server_cpu(server), time.monotonic()
    done = subprocess.run(argv, capture_output=True, check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cli, server_cpu(server) - cpu0, done.stdout.count(b"\n")


def query(args: argparse.Namespace) -> None:
    count = int(3600 * args.flows_per_s)
    with fresh_server() as server:
        start = time.time_ns() - 3600 * 10**9 + 10**9  # the hour before now, all of it inside --since 1h
        writer = ClickHouseWriter(server.url)
        step = 10**9 // int(args.flows_per_s)
        for at in range(0, count, 50_000):
            writer.export(made_up(min(50_000, count - at), start + at * step, step, seed=at))
            writer.flush(300)
        writer.close()
        stored = int(Client.connect(server.url).execute("SELECT count() FROM flows"))
        print(f"{stored:,} flows stored for an hour at {args.flows_per_s:g} flows/s", flush=True)
        base = [FLOWSCOPE, "observe", "--history", server.url, "--since", "1h"]
        cases = {
            "the whole hour, -o jsonpb": [*base, "--all", "-o", "jsonpb"],
            "the whole hour, compact": [*base, "--all"],
            "--from-pod default/client --verdict DROPPED (pushed down)": [
                *base, "--all", "--from-pod", "default/client", "--verdict", "DROPPED", "-o", "jsonpb"
            ],
            "--from-label app=client --to-port 53 (labels applied after)": [
                *base, "--all", "--from-label", "app=client", "--to-port", "53", "-o", "jsonpb"
            ],
            "--last 100": [FLOWSCOPE, "observe", "--history", server.url, "--last", "100", "-o", "jsonpb"],
            "top --history --since 1h": [FLOWSCOPE, "top", "--history", server.url, "--since", "1h"],
        }  # fmt: skip
        rows = ["| query | flows out | wall s | CLI CPU s | ClickHouse CPU s |", "|---|---|---|---|---|"]
        for name, argv in cases.items():
            runs = [_timed(argv, server) for _ in range(3)]
            wall, cli, ch = (statistics.median(r[i] for r in runs) for i in range(3))
            rows.append(f"| {name} | {runs[0][3]:,} | {wall:.2f} | {cli:.2f} | {ch:.2f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


# encode


def lab_records(count: int) -> tuple[np.ndarray, FlowDecoder]:
    """`count` records of a lab's traffic and a decoder of the lab's cluster."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from records import (
        ACK,
        CLIENT_V4,
        DNS_V4,
        IFINDEX,
        PSH,
        SERVER_V4,
        SYN,
        TS,
        ether,
        icmp4,
        ipv4,
        lab_registry,
        record,
        tcp4,
        udp4,
    )

    points = [(names.TRACE_FROM_LXC, IFINDEX["lxc1001"]), (names.TRACE_TO_STACK, IFINDEX["eth0"])]
    points.append((names.TRACE_TO_LXC, IFINDEX["lxc1002"]))
    made = []
    for i in range(count):
        subtype, ifindex = points[i % 3]
        kind, port = i // 3 % 4, 30000 + i // 12 % 20000
        if kind == 0:
            packet = tcp4(CLIENT_V4, SERVER_V4, port, 80, ACK | PSH)
        elif kind == 1:
            packet = tcp4(SERVER_V4, CLIENT_V4, 80, port, ACK | (SYN if port % 50 == 0 else 0))
        elif kind == 2:
            packet = udp4(CLIENT_V4, DNS_V4, port, 53)
        else:
            packet = ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8)))
        made.append(record(packet, subtype=subtype, ifindex=ifindex, ts=TS + i * 1000))
    return np.concatenate(made), FlowDecoder("node1", lab_registry(), b"bench")


def encode(args: argparse.Namespace) -> None:
    batch, decoder = lab_records(args.flows)
    selection, from_records = Selection(ExportSpec(), decoder), RecordRows(decoder)
    flows = np.flatnonzero(batch["type"] != EVENT_LOST)

    def before() -> list[bytes]:
        rows, lost = selection.rows(batch, 0)
        return [row_binary(r) for r in selection.messages(batch, rows, lost, 0)]

    def after() -> list[bytes]:
        return from_records.rows(batch, flows, 0)

    assert before() == after(), "the rows differ"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import alternating

    cpu: dict[str, list[float]] = {"before": [], "after": []}
    for _, variant in alternating(list(cpu), args.rounds):
        start = time.process_time()
        (before if variant == "before" else after)()
        cpu[variant].append((time.process_time() - start) / args.flows * 1e6)
    print("| rows made | CPU µs per flow (best, median of rounds) |\n|---|---|")
    for variant, runs in cpu.items():
        print(f"| {variant} | {min(runs):.2f}, {statistics.median(runs):.2f} |")


# agent


def agent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import agent as running_agent
    from common import alternating, events_per_packet, ingest, settle
    from flowscope.lab import Lab

    variants = ["off", "clickhouse", *(["clickhouse-before"] if args.before else [])]
    commands = {"clickhouse-before": [str(args.before / ".venv/bin/flowscope")]} if args.before else {}
    stored_before = 0
    runs: dict[str, list[tuple[float, int, int]]] = {v: [] for v in variants}
    with Lab(f"hb{os.getpid()}") as lab:  # another run of this bench may have a lab of its own
        lab.up(traffic=False, agent=False)
        with fresh_server(lab.netns("node1")) as server:
            for number, variant in alternating(variants, args.rounds):
                extra = ["--export-clickhouse", server.url] if variant != "off" else []
                # The writer's thread is done too when what it stores stopped growing.
                written = (lambda: settle(lambda: _stored(server), quiet_s=2.0)) if variant != "off" else None
                # The writer sends what it holds as it stops.
                with running_agent(lab, command=commands.get(variant), extra_args=extra) as pid:
                    cost = ingest(lab, pid, args.rate / events_per_packet(lab), args.seconds, written)
                stored = _stored(server) - stored_before if variant != "off" else 0
                stored_before += stored
                runs[variant].append((cost.cpu_s, cost.events, stored))
                print(
                    f"round {number + 1} {variant:17} {cost.events:>9,} events {stored:>9,} stored"
                    f" {cost.cpu_s:6.2f} s CPU {cost.us_per_event:6.2f} us/event",
                    flush=True,
                )
    per_event = {v: statistics.median(c / max(1, e) * 1e6 for c, e, _ in runs[v]) for v in variants}
    share = {v: statistics.median(s / max(1, e) for _, e, s in runs[v]) for v in variants}
    print("| variant | agent CPU µs/event | added µs/event | stored/event |\n|---|---|---|---|")
    off = per_event["off"]
    for v in variants:
        added = "—" if v == "off" else f"{per_event[v] - off:+.2f}"
        print(f"| {v} | {per_event[v]:.2f} | {added} | {share[v]:.2f} |")


def _stored(server: ClickHouse) -> int:
    """Rows in the flows table of a server in a lab's namespace (0 before the writer made the table)."""
    with server.inside():
        client = Client.connect(server.url)
        try:
            return int(client.execute("SELECT count() FROM flows"))
        except ClickHouseError:
            return 0
        finally:
            client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="what", required=True)
    p = commands.add_parser("ingest")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--writers", type=int, nargs="+", default=[1, 3])
    p.set_defaults(run=ingest)
    p = commands.add_parser("query")
    p.add_argument("--flows-per-s", type=float, default=100.0)
    p.set_defaults(run=query)
    p = commands.add_parser("encode")
    p.add_argument("--flows", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.set_defaults(run=encode)
    p = commands.add_parser("agent")
    p.add_argument("--rate", type=float, default=100_000)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", type=Path, help="a checkout whose agent stores too, measured in the same rounds")
    p.set_defaults(run=agent)
    args = parser.parse_args()
    args.run(args)
    print("command:", " ".join([".venv/bin/python", "bench/history_bench.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
