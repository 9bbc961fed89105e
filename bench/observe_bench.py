"""How fast `flowscope observe` prints, the CLI alone: this checkout's against another's, in alternating runs.

    .venv/bin/python bench/observe_bench.py --before CHECKOUT [--flows 20000] [--rounds 5] [--formats F ...]
    .venv/bin/python bench/observe_bench.py --before CHECKOUT --stages   # parse and print alone, µs per flow
    .venv/bin/python bench/observe_bench.py --profile FORMAT             # this checkout's CLI under cProfile

Why alone: the servers are being made fast separately, and a slow server would hide the client's cost. So a
server in a child process sends 20,000 real-looking GetFlowsResponses (records from tests/records.py decoded by
the real FlowDecoder) as bytes encoded once beforehand, with an identity serializer: it costs next to nothing
per flow. Each round runs `flowscope observe --last N -o FORMAT > file` with each checkout's own installed CLI
(its .venv/bin/flowscope, a `git worktree add` and its scripts/setup), one after the other, so both see the
same machine speed; the figure is flows over the best wall time, start-up included (the time a person waits).
Every run's output is compared byte for byte with the other checkout's: a faster printer that prints
something else is a failure, not a result. `--profile FORMAT` instead runs this checkout's CLI once under
cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FORMATS = ("compact", "json", "jsonpb", "dict", "table")
TARGETS = {"compact": 40_000, "json": 40_000, "jsonpb": 70_000}


def corpus(count: int) -> list[bytes]:
    """`count` encoded GetFlowsResponses of a small lab's everyday traffic: TCP handshakes and data both ways,
    DNS over UDP, ICMP to the world, IPv6, one packet at each observation point, a second apart in time."""
    sys.path.insert(0, str(ROOT / "tests"))
    import records as r

    from flowscope.api.observer import observer_pb2
    from flowscope.common import names
    from flowscope.observer.parser import FlowDecoder

    decoder = FlowDecoder("node1", r.lab_registry(), b"observe-bench")
    kinds = [
        lambda port: r.record(r.tcp4(sport=port, flags=r.SYN)),
        lambda port: r.record(r.tcp4(src=r.SERVER_V4, dst=r.CLIENT_V4, sport=80, dport=port, flags=r.SYN | r.ACK)),
        lambda port: r.record(r.tcp4(sport=port, flags=r.ACK | r.PSH), subtype=names.TRACE_TO_STACK),
        lambda port: r.record(r.udp4(sport=port)),
        lambda port: r.record(r.ether(r.ipv4(r.CLIENT_V4, r.WORLD_V4, 1, r.icmp4(8))), verdict=names.VERDICT_DROPPED),
        lambda port: r.record(r.ether(r.ipv6(r.CLIENT_V6, r.SERVER_V6, 6, r.tcp(port, 443, r.SYN)), 0x86DD)),
        lambda port: r.record(r.tcp4(sport=port, flags=r.FIN | r.ACK), subtype=names.TRACE_TO_NETWORK),
    ]
    encoded = []
    for seq in range(count):
        record = kinds[seq % len(kinds)](40000 + seq % 20000)[0]
        record["ts"] = r.TS + seq * 1_000_003
        flow = decoder.decode(record, seq)
        encoded.append(observer_pb2.GetFlowsResponse(flow=flow, node_name=flow.node_name, time=flow.time))
    return [response.SerializeToString() for response in encoded]


def serve(socket_path: str, count: int) -> None:
    """The child: answer every GetFlows with the corpus's last `number` flows (all for 0), as fast as gRPC takes
    bytes, and the Health check the CLI may make, until SIGTERM. The server is common/h2grpc's, which sends
    many responses a write (grpcio's Python server does not send more than ~20,000 messages/s here, slower
    than the client it would measure); both checkouts' CLIs meet the same server."""
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    from flowscope.api.observer import observer_pb2
    from flowscope.common.h2grpc.server import Server

    flows = corpus(count)

    def get_flows(request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from flows[-request.number :] if request.number else flows

    handler = grpc.unary_stream_rpc_method_handler(
        get_flows, request_deserializer=observer_pb2.GetFlowsRequest.FromString, response_serializer=None
    )
    server = Server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("observer.Observer", {"GetFlows": handler}),))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(0)


@contextmanager
def server(socket_path: str, count: int) -> Iterator[None]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", socket_path, "--flows", str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the bench server did not start")
        yield
    finally:
        child.terminate()
        child.wait(10)


def observe(cli: Path, socket_path: str, count: int, output: str, into: Path) -> tuple[float, float]:
    """Seconds `cli observe --last count -o output` takes, its standard output written to `into`: wall time, and
    the command's CPU time (user + system), which a machine shared with other work changes much less."""
    command = [str(cli), "observe", "--server", f"unix://{socket_path}", "--last", str(count), "-o", output]
    with into.open("wb") as out:
        return timed(command, out)


def timed(command: list[str], out: IO[bytes] | int) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command` (the CPU from the children's rusage, before and after)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=out, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime


def receive_only(socket_path: str, count: int) -> float:
    """Flows/s a gRPC client in Python gets when it does nothing with them (bytes, not even parsed): the ceiling
    of any client built on grpcio, measured against the same server."""
    import grpc

    from flowscope.api.observer import observer_pb2

    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        call = channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=None,
        )
        start = time.perf_counter()
        received = sum(1 for _ in call(observer_pb2.GetFlowsRequest(number=count)))
        return received / (time.perf_counter() - start)


def receive_h2grpc(socket_path: str, count: int) -> tuple[int, float]:
    """(flows, client CPU seconds) for GetFlows read by common/h2grpc's stream reader, each message parsed: the
    reader the CLI and the relay use in place of grpcio's."""
    from flowscope.api.observer import observer_pb2
    from flowscope.common.h2grpc.client import open_stream

    request = observer_pb2.GetFlowsRequest(number=count).SerializeToString()
    start, flows = time.process_time(), 0
    stream = open_stream(f"unix://{socket_path}", "/observer.Observer/GetFlows", request)
    for batch in stream.batches():
        for message in batch:
            observer_pb2.GetFlowsResponse.FromString(message)
        flows += len(batch)
    return flows, time.process_time() - start


def receive_cpu(socket_path: str, count: int) -> tuple[float, float]:
    """Client CPU µs per flow received and parsed: grpcio, and common/h2grpc's reader."""
    import grpc

    from flowscope.api.observer import observer_pb2

    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        call = channel.unary_stream(
            "/observer.Observer/GetFlows",
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=observer_pb2.GetFlowsResponse.FromString,
        )
        start = time.process_time()
        received = sum(1 for _ in call(observer_pb2.GetFlowsRequest(number=count)))
        grpcio = (time.process_time() - start) / received * 1e6
    flows, seconds = receive_h2grpc(socket_path, count)
    if flows != count:
        raise SystemExit(f"the h2grpc reader got {flows} flows of {count}")
    return grpcio, seconds / flows * 1e6


def start_up(cli: Path, socket_path: str) -> tuple[float, float]:
    """Wall and CPU seconds `observe --last 1` takes: the fixed cost in every figure (imports, connecting,
    closing)."""
    command = [str(cli), "observe", "--server", f"unix://{socket_path}", "--last", "1"]
    return timed(command, subprocess.DEVNULL)


def compare(args: argparse.Namespace, socket_path: str, folder: Path) -> list[tuple[str, float, float]]:
    clis = {"before": args.before / ".venv/bin/flowscope", "after": ROOT / ".venv/bin/flowscope"}
    floor = max(receive_only(socket_path, args.flows) for _ in range(args.rounds))
    fixed = {side: best_of(start_up(cli, socket_path) for _ in range(args.rounds)) for side, cli in clis.items()}
    print(f"gRPC receive alone (grpcio, bytes, no parsing): {floor:,.0f} flows/s")
    cpu = [receive_cpu(socket_path, args.flows) for _ in range(args.rounds)]
    grpcio, h2grpc = min(c[0] for c in cpu), min(c[1] for c in cpu)
    print(f"client CPU per flow received and parsed: grpcio {grpcio:.1f} µs, common/h2grpc's reader {h2grpc:.1f} µs")
    (before_wall, before_cpu), (after_wall, after_cpu) = fixed["before"], fixed["after"]
    print(
        f"observe --last 1 (start-up, connect, close): before {before_wall:.2f} s ({before_cpu:.2f} s CPU), "
        f"after {after_wall:.2f} s ({after_cpu:.2f} s CPU)"
    )
    rows = []
    for output in args.formats:
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for side, cli in clis.items():
                runs[side].append(observe(cli, socket_path, args.flows, output, folder / side))
            before, after = ((folder / side).read_bytes() for side in ("before", "after"))
            if before != after:
                raise SystemExit(f"-o {output}: this checkout prints other bytes than {args.before}")
        lines = (folder / "after").read_bytes().count(b"\n")
        (before_wall, before_cpu), (after_wall, after_cpu) = best_of(runs["before"]), best_of(runs["after"])
        rows.append((output, args.flows / before_wall, args.flows / after_wall))
        figures = {
            side: f"{args.flows / wall:9,.0f} flows/s ({args.flows / cpu:7,.0f} per CPU-s)"
            for side, (wall, cpu) in (("before", (before_wall, before_cpu)), ("after", (after_wall, after_cpu)))
        }
        print(f"-o {output:8} before {figures['before']}   after {figures['after']}  ({lines} lines)")
    return rows


def best_of(runs: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """The least wall time and the least CPU time of several runs (each the least disturbed by other work)."""
    walls, cpus = zip(*runs, strict=True)
    return min(walls), min(cpus)


def profile(args: argparse.Namespace, socket_path: str, folder: Path) -> None:
    """This checkout's CLI in this process under cProfile, standard output into a file."""
    from flowscope.cli.main import main

    profiler = cProfile.Profile()
    saved = sys.stdout
    with (folder / "profiled").open("w") as sys.stdout:
        argv = ["observe", "--server", f"unix://{socket_path}", "--last", str(args.flows), "-o", args.profile]
        start = time.perf_counter()
        profiler.runcall(main, argv)
        took = time.perf_counter() - start
    sys.stdout = saved
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
    print(f"-o {args.profile}: {args.flows / took:,.0f} flows/s under cProfile ({took:.2f} s)")
    print(text.getvalue())


def format_cost(count: int) -> None:
    """The child of --stages: µs of CPU per flow to parse a response and to print it in each format into memory,
    from parsed responses and from their bytes (`FORMAT<-bytes`: what a reader holding bytes pays), in the
    checkout whose python runs this file (its own printers), as one JSON line."""
    import json

    from flowscope.api.observer import observer_pb2
    from flowscope.cli.printer import PrintOptions, Sink, make_printer

    encoded = corpus(count)
    start = time.process_time()
    responses = [observer_pb2.GetFlowsResponse.FromString(data) for data in encoded]
    costs = {"parse": (time.process_time() - start) / count * 1e6}
    for output in FORMATS:
        printer = make_printer(output, Sink(io.StringIO()), Sink(io.StringIO()), PrintOptions())
        start = time.process_time()
        for response in responses:
            printer.write(response)
        printer.close()
        costs[output] = (time.process_time() - start) / count * 1e6
    for output in FORMATS:  # from the bytes a reader holds: parsed here, or written from them (write_bytes)
        printer = make_printer(output, Sink(io.StringIO()), Sink(io.StringIO()), PrintOptions())
        start = time.process_time()
        if hasattr(printer, "write_bytes"):
            printer.write_bytes(encoded)
        else:
            for data in encoded:
                printer.write(observer_pb2.GetFlowsResponse.FromString(data))
        printer.close()
        costs[output + "<-bytes"] = (time.process_time() - start) / count * 1e6
    print(json.dumps(costs))


def stages(args: argparse.Namespace) -> None:
    """Parsing and printing alone, without gRPC or start-up, each checkout in its own process, alternating."""
    import json

    pythons = {"before": args.before / ".venv/bin/python", "after": ROOT / ".venv/bin/python"}
    best: dict[str, dict[str, float]] = {side: {} for side in pythons}
    for _ in range(args.rounds):
        for side, python in pythons.items():
            command = [str(python), __file__, "--format-cost", "--flows", str(args.flows)]
            costs = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            best[side] = {stage: min(cost, best[side].get(stage, cost)) for stage, cost in costs.items()}
    for stage in best["after"]:
        print(f"{stage:8} before {best['before'][stage]:6.1f} µs/flow   after {best['after'][stage]:6.1f} µs/flow")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="the other checkout (git worktree add + its scripts/setup)")
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--profile", choices=FORMATS, help="profile this checkout's CLI printing this format")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--stages", action="store_true", help="parsing and printing alone, in memory, per flow")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--format-cost", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.format_cost:
        format_cost(args.flows)
        return 0
    if args.stages:
        stages(args)
        return 0
    if args.serve:
        serve(args.serve, args.flows)
        return 0
    if not args.profile and not args.before:
        parser.error("--before CHECKOUT or --profile FORMAT")
    with tempfile.TemporaryDirectory(prefix="observe-bench-") as temp:
        folder = Path(temp)
        socket_path = str(folder / "observer.sock")
        with server(socket_path, args.flows):
            if args.profile:
                profile(args, socket_path, folder)
            else:
                compare(args, socket_path, folder)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
