"""How fast one agent answers `--last 20000` (issue 15): this checkout against another, side by side.

    .venv/bin/python bench/read_bench.py [--before CHECKOUT ...] [--flows 20000] [--rounds 5] [--profile]

Each checkout serves from a worker process of its own: the agent's own gRPC server (ObserverServer, its
service, ring and decoder) on a unix socket, its ring filled with records of lab traffic (TCP both ways, UDP,
IPv6), as an agent at aggregation `none` stores a flood. The client asks as the hubble CLI does: no field
mask (its jsonpb output) and Hubble's default field mask (compact), and reads the responses raw (the bytes
gRPC hands over, as the Go CLI's cost is outside Python) and as messages, with grpcio's client and with
common/h2grpc's reader (~1 µs of client CPU a flow, near a Go client's: the time is then the server's).
Rounds alternate between the checkouts so a slow moment of the machine hurts both. The worker also serves a
stream of ready-made response bytes, the floor of a Python gRPC server's cost per message, which no encoder
can go below: from grpcio's server ("floor") and, in a checkout that has it, from common/h2grpc's Server
("floor h2grpc"), which sends a stream's messages in batches.

`--profile` prints where this checkout's agent spends a `--last` request's time (cProfile, in process).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
FLOOR_METHOD = "/bench.Floor/Send"
GETFLOWS = "/observer.Observer/GetFlows"


def ring_records(count: int) -> object:
    """`count` records of lab traffic, a microsecond apart (imports flowscope: call it in a worker)."""
    import numpy as np
    from records import ACK, CLIENT_V6, PSH, SERVER_V6, SYN, TS, ether, ipv6, record, tcp, tcp4, udp4

    from flowscope.observer import events

    def kinds(port: int) -> list[np.ndarray]:
        reply = events.F_REPLY | events.F_REPLY_KNOWN
        return [
            record(tcp4(sport=port, flags=SYN)),
            record(tcp4(src="10.200.1.12", dst="10.200.1.11", sport=80, dport=port, flags=SYN | ACK), flags=reply),
            record(tcp4(sport=port, flags=ACK | PSH)),
            record(udp4(sport=port)),
            record(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(port, 443, SYN)), 0x86DD)),
        ]

    batch = np.concatenate([kinds(20000 + i // 5)[i % 5] for i in range(count)])
    batch["ts"] = TS + np.arange(count) * 1000
    return batch


def serve(checkout: Path, socket_path: Path, count: int) -> None:
    """The worker: `checkout`'s agent server over a full ring, and the floor stream beside it."""
    from checkouts import import_checkout

    import_checkout(checkout)
    import grpc
    from records import lab_registry

    from flowscope.observer import events
    from flowscope.observer.flow_ring import FlowRing
    from flowscope.observer.parser import FlowDecoder
    from flowscope.observer.server.serve import ObserverServer
    from flowscope.observer.server.state import NodeState

    registry = lab_registry()
    ring = FlowRing(65535, events.event_dtype())
    ring.write(ring_records(count))
    state = NodeState("node1", "lab", "", ring, FlowDecoder("node1", registry, b"bench"), registry)
    server = ObserverServer(state, socket_path, None)
    server.start()
    floor = grpc.server(futures.ThreadPoolExecutor(2))
    sample = _sample_response(state)

    def send(request: bytes, context: object) -> Iterator[bytes]:
        for _ in range(int(request or b"0")):
            yield sample

    handler = grpc.unary_stream_rpc_method_handler(send)
    floors = [floor]
    try:
        from flowscope.common.h2grpc.server import Server

        floors.append(Server(futures.ThreadPoolExecutor(2)))
    except ImportError:  # a checkout from before common/h2grpc
        pass
    for each, suffix in zip(floors, (".floor", ".floor-h2"), strict=False):
        each.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Floor", {"Send": handler}),))
        each.add_insecure_port(f"unix://{socket_path}{suffix}")
        each.start()
    print("ready h2grpc" if len(floors) > 1 else "ready", flush=True)
    sys.stdin.read()  # until the parent closes it
    for each in floors:
        each.stop(0)
    server.stop(0.1)


def encode_cost(checkout: Path, count: int, rounds: int) -> None:
    """The worker of `--encode`: the least CPU time `checkout`'s agent takes to make the wire bytes of a `--last
    count` answer without gRPC (its own way: FlowReader.wire, or messages serialized as gRPC would)."""
    from checkouts import import_checkout

    import_checkout(checkout)
    from records import lab_registry

    from flowscope.api.observer import observer_pb2
    from flowscope.observer import events
    from flowscope.observer.filters import FilterContext
    from flowscope.observer.flow_ring import FlowRing
    from flowscope.observer.parser import FlowDecoder
    from flowscope.observer.server.getflows import FlowReader, select

    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"bench")
    ring = FlowRing(65535, events.event_dtype())
    ring.write(ring_records(count))
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot, instance=decoder.instance)
    selection = select(observer_pb2.GetFlowsRequest(number=count), ctx)
    best = float("inf")
    for _ in range(rounds):
        reader = FlowReader(ring, decoder, selection, "node1")
        start = time.process_time()  # CPU time: other people's work on the machine stretches wall time a lot
        if hasattr(reader, "wire"):
            sum(len(b) for b in reader.wire(lambda: True))
        else:
            sum(len(r.SerializeToString()) for r in reader.responses(lambda: True))
        best = min(best, time.process_time() - start)
    print(best)


def _sample_response(state: object) -> bytes:
    from flowscope.api.observer import observer_pb2
    from flowscope.observer.server.state import NodeState

    assert isinstance(state, NodeState)
    flow = state.decoder.decode(state.ring.read(state.ring.oldest, state.ring.oldest + 1).records[0], 1)
    response = observer_pb2.GetFlowsResponse(flow=flow, node_name=state.node_name)
    response.time.CopyFrom(flow.time)
    return response.SerializeToString()


class Worker:
    def __init__(self, checkout: Path, count: int) -> None:
        self.checkout = checkout
        self.socket = Path(tempfile.mkdtemp(prefix="fs-read-")) / "hubble.sock"
        command = [sys.executable, __file__, "--serve", str(checkout), str(self.socket), str(count)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise SystemExit(f"the worker of {checkout} did not start")
        self.h2grpc = ready[1:] == ["h2grpc"]  # it serves the floor from common/h2grpc's Server too

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)
        self.socket.unlink(missing_ok=True)
        Path(f"{self.socket}.floor").unlink(missing_ok=True)
        Path(f"{self.socket}.floor-h2").unlink(missing_ok=True)
        self.socket.parent.rmdir()


def measure(worker: Worker, case: str, count: int) -> tuple[float, float, int]:
    """(seconds, server CPU seconds, responses) of one request of `case`."""
    import grpc
    from google.protobuf.field_mask_pb2 import FieldMask

    from flowscope.api.observer import observer_pb2
    from flowscope.cli.observe.request import HUBBLE_FIELD_MASK

    mask = FieldMask(paths=list(HUBBLE_FIELD_MASK)) if "compact" in case else None
    request = observer_pb2.GetFlowsRequest(number=count, field_mask=mask)
    decode: Callable[[bytes], object] | None = observer_pb2.GetFlowsResponse.FromString if "messages" in case else None
    floors = {"floor": ".floor", "floor h2grpc": ".floor-h2"}
    target = f"unix://{worker.socket}{floors.get(case, '')}"
    if case.endswith(FAST_CLIENT):  # a client that costs ~1 µs a flow, as a Go client does: the server is measured
        from flowscope.common.h2grpc.client import open_stream

        cpu = worker.cpu_s()
        start = time.perf_counter()
        stream = open_stream(target, GETFLOWS, request.SerializeToString(), timeout=120)
        received = sum(len(batch) for batch in stream.batches())
        return time.perf_counter() - start, worker.cpu_s() - cpu, received
    with grpc.insecure_channel(target) as channel:
        if case in floors:
            call = channel.unary_stream(FLOOR_METHOD)
            payload = str(count).encode()
        else:
            call = channel.unary_stream(GETFLOWS, response_deserializer=decode)
            payload = request.SerializeToString()
        cpu = worker.cpu_s()
        start = time.perf_counter()
        received = sum(1 for _ in call(payload, timeout=120))
        return time.perf_counter() - start, worker.cpu_s() - cpu, received


FAST_CLIENT = ", h2grpc reader"
CASES = (
    "jsonpb raw",
    "jsonpb messages",
    "compact raw",
    "compact messages",
    "floor",
    "floor h2grpc",
    "jsonpb raw" + FAST_CLIENT,
    "compact raw" + FAST_CLIENT,
)


def profile(count: int) -> None:
    """Where the agent's time goes for one `--last count` (no mask), in this process."""
    from records import lab_registry

    from flowscope.api.observer import observer_pb2
    from flowscope.observer import events
    from flowscope.observer.filters import FilterContext
    from flowscope.observer.flow_ring import FlowRing
    from flowscope.observer.parser import FlowDecoder
    from flowscope.observer.server.getflows import FlowReader, select

    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"bench")
    ring = FlowRing(65535, events.event_dtype())
    ring.write(ring_records(count))
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot, instance=decoder.instance)
    selection = select(observer_pb2.GetFlowsRequest(number=count), ctx)

    def run() -> int:
        return sum(len(b) for b in FlowReader(ring, decoder, selection, "node1").wire(lambda: True))

    start = time.perf_counter()
    run()
    print(f"in process, no profiler: {count} flows in {time.perf_counter() - start:.3f} s")
    profiler = cProfile.Profile()
    profiler.runcall(run)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--before", type=Path, action="append", default=[], help="a checkout to measure this one against (repeatable)"
    )
    parser.add_argument("--flows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--encode", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), int(args.serve[2]))
        return
    if args.encode:
        encode_cost(Path(args.encode[0]), int(args.encode[1]), int(args.encode[2]))
        return
    if args.profile:
        profile(args.flows)
        return
    sides = {f"{path.name}": path.resolve() for path in args.before} | {"this checkout": HERE.parent}
    encode: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, path in sides.items():
            command = [sys.executable, __file__, "--encode", str(path), str(args.flows), "3"]
            encode[name].append(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    workers = {name: Worker(path, args.flows) for name, path in sides.items()}
    try:
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.rounds):
            for case in CASES:
                for name, worker in workers.items():
                    if case != "floor h2grpc" or worker.h2grpc:
                        results.setdefault((case, name), []).append(measure(worker, case, args.flows))
    finally:
        for worker in workers.values():
            worker.close()
    print(f"`--last {args.flows}`, medians of {args.rounds} alternating rounds")
    print("| request, client reads | " + " | ".join(f"{n}: s, flows/s, server CPU µs/flow" for n in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for case in CASES:
        cells = []
        for name in sides:
            runs = results.get((case, name), [])
            if not runs:
                cells.append("n/a")
                continue
            seconds = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            received = runs[0][2]
            cells.append(f"{seconds:.3f} s, {received / seconds:,.0f}/s, {cpu / received * 1e6:.1f} µs")
        print(f"| {case} | " + " | ".join(cells) + " |")
    cells = [f"{statistics.median(encode[n]):.3f} s, {args.flows / statistics.median(encode[n]):,.0f}/s" for n in sides]
    print("| the agent's encoding alone, in process, no gRPC (CPU time, best of 3) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
