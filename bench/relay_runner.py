"""The relay under measure in bench/relay_bench.py, in a process of its own (this checkout's relay/ or another
checkout's, `--before`), and a client that reads it at ~1 µs a flow: `--last` and follow figures.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from common import cpu_seconds
from flowscope.api.observer import observer_pb2
from flowscope.common.h2grpc.client import open_stream

PROJECT = Path(__file__).resolve().parents[1]
LAST = 20_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The relay, from the relay/ folder given (empty: this checkout's), with every thread profiled when asked.
RELAY_RUNNER = """
import cProfile, os, pstats, signal, sys, threading, time
code, address, profile_out, *peers = sys.argv[1:]
metrics = os.environ.get("FLOWSCOPE_BENCH_RELAY_METRICS", "")  # --metrics-address, when measured with metrics
import flowscope.relay
if code:
    flowscope.relay.__path__[:] = [code]
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayConfig, RelayServer
profiles = []
if profile_out:  # every thread, in CPU time (a thread waiting costs nothing)
    bootstrap = threading.Thread._bootstrap_inner
    def profiled(self):
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()
        try:
            bootstrap(self)
        finally:
            profile.disable()
    threading.Thread._bootstrap_inner = profiled
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
config = RelayConfig(
    listen_address=address,
    peers=[Peer(*p.split("=", 1)) for p in peers],
    name="relay",
    **({"metrics_address": metrics} if metrics else {}),
)
server = RelayServer(config).start()
signal.sigwait({signal.SIGTERM})
if profile_out:
    for profile in profiles:
        profile.disable()
    pstats.Stats(*profiles).dump_stats(profile_out)
server.stop(0.2)
"""


def with_parent() -> None:
    """In a child: receive SIGTERM when the benchmark dies, even by kill -9 (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


@contextmanager
def relay_process(peers: list[str], code: str = "", profile: str = "", metrics: str = "") -> Iterator[tuple[str, int]]:
    """A relay in front of `peers` (code: another relay/ folder; metrics: its --metrics-address); yields its
    address and pid once it serves."""
    from flowscope.lab.relay import free_address

    address = free_address()
    env = os.environ | ({"FLOWSCOPE_BENCH_RELAY_METRICS": metrics} if metrics else {})
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY_RUNNER, code, address, profile, *peers],
        cwd=PROJECT,
        preexec_fn=with_parent,
        env=env,
    )
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield address, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def read_flows(address: str, request: observer_pb2.GetFlowsRequest) -> Generator[bytes, None, None]:
    """The relay's responses, read by common/h2grpc's reader: a grpcio client's ~40 µs of CPU a message would
    make the client the ceiling of the figures, and take the CPUs the relay runs on."""
    stream = open_stream(address, "/observer.Observer/GetFlows", request.SerializeToString())
    try:
        for batch in stream.batches():
            yield from batch
    finally:
        stream.cancel()


def synthetic_last(address: str, pid: int) -> dict[str, float]:
    """`--last 20000` of the three synthetic nodes through the relay: seconds to the last flow, relay CPU."""
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    flows = sum(1 for raw in read_flows(address, observer_pb2.GetFlowsRequest(number=LAST)) if raw[:1] == b"\x0a")
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu0
    return {"seconds": seconds, "flows": flows, "flows_per_s": flows / seconds, "cpu_us_per_flow": cpu / flows * 1e6}


def synthetic_follow(address: str, pid: int, seconds: float) -> dict[str, float]:
    """Follow for `seconds` after a warm-up: flows merged per second (read + lost) and relay CPU per flow; for
    each flow read, receipt time minus its time (the agent stamped it as it sent it)."""
    latencies: list[int] = []
    count, lost, started, cpu0 = 0, 0, 0.0, 0.0
    responses = read_flows(address, observer_pb2.GetFlowsRequest(follow=True))
    warm_up = time.monotonic() + 1.0
    for raw in responses:
        now = time.time_ns()
        if not started and time.monotonic() >= warm_up:
            count, lost, latencies, started, cpu0 = 0, 0, [], time.monotonic(), cpu_seconds(pid)
        kind = raw[:1]
        if kind == b"\x0a":
            count += 1
            response = observer_pb2.GetFlowsResponse.FromString(raw)
            latencies.append(now - (response.time.seconds * 1_000_000_000 + response.time.nanos))
        elif kind == b"\x1a":  # a LostEvent: flows the relay dropped because this client was slow
            lost += observer_pb2.GetFlowsResponse.FromString(raw).lost_events.num_events_lost
        if started and time.monotonic() - started >= seconds:
            break
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    responses.close()
    merged = count + lost
    ms = [x / 1e6 for x in latencies] or [float("nan")]
    return {
        "flows_per_s": merged / elapsed,
        "delivered_per_s": count / elapsed,
        "lost": lost,
        "relay_cpu_us_per_flow": cpu / max(1, merged) * 1e6,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "load": os.getloadavg()[0],
    }
