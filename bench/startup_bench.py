"""How long the agent takes from launch to its first flow, and what its memory is made of: two checkouts side by side.

    .venv/bin/python bench/startup_bench.py [--before CHECKOUT] [--rounds 5] [--full-ring]

On a one-node lab with a ping from the client pod to the server pod every 10 ms, each round starts this
checkout's agent with --no-compile-cache (compiling in its own process, as before the cache), cold (an empty
compile cache: child processes compile and record, the agent loads what they recorded) and warm (the compile
cache filled by an unmeasured start before the rounds: it loads without compiling), and (with --before) another
checkout's agent, in alternating order, and measures:
- start-up: from launching `flowscope agent` to the time of the first flow it stored (the flow's own time, so
  the figure is when the datapath saw the packet, not when a client asked), and the agent's CPU time (user +
  system) when that flow was read, and its compiler processes' apart: on a busy machine the wall time swings
  with the load, the CPU time much less;
- memory, once the agent answers: its resident memory (VmRSS) split by what is mapped (/proc/PID/smaps): the
  BPF maps mapped into it (ring buffers and the conntrack tables are mapped whole; kernel memory, counted apart),
  the compiler library (libbcc, LLVM, clang), numpy, protobuf and grpc, the heap and the rest; with --full-ring
  again after the flow ring has wrapped.
Medians over the rounds; the figures go to stdout as markdown.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from common import cpu_seconds, median, server_status, udp64_pps
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

CAPACITY = 65535
START_TIMEOUT_S = 180  # other work on the machine can make a compilation take many times its usual time
MIB = 1024 * 1024
BPF_MAP_TYPE_RINGBUF = 27
BPF_F_MMAPABLE = 0x400
# smaps mapping name -> the part of the agent it belongs to (first match wins)
PARTS = (
    ("BPF maps", re.compile(r"anon_inode:bpf")),
    ("compiler (libbcc, LLVM, clang)", re.compile(r"libbcc|LLVM|clang", re.IGNORECASE)),
    ("numpy", re.compile(r"numpy")),
    ("protobuf, grpc", re.compile(r"protobuf|_upb|grpc", re.IGNORECASE)),
    ("python and other libraries", re.compile(r"\.so|python", re.IGNORECASE)),
    ("heap", re.compile(r"\[heap\]")),
)
ANONYMOUS = "anonymous (malloc arenas, thread stacks)"


def smaps(pid: int) -> dict[str, int]:
    """Resident bytes by part (PARTS, then anonymous), plus every BPF map's mapping by name."""
    parts: dict[str, int] = defaultdict(int)
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = fields[5] if len(fields) > 5 else ""
        elif fields[0] == "Rss:":
            part = next((part for part, pattern in PARTS if pattern.search(name)), ANONYMOUS if not name else "other")
            parts[part] += int(fields[1]) * 1024
    return dict(parts)


def bpf_maps_mapped(pid: int) -> dict[str, int]:
    """The BPF maps this process holds that can be mapped into it (ring buffers, mmap-able arrays such as the
    conntrack tables), by name: their size in bytes (fdinfo), whatever of them is resident now."""
    sizes: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("anon_inode:bpf-map"):
                continue
            info = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        kind, flags = int(info["map_type"]), int(info["map_flags"], 16)
        entries, value = int(info["max_entries"]), int(info["value_size"])
        if kind == BPF_MAP_TYPE_RINGBUF:
            sizes[map_name(info["map_id"].strip())] = entries
        elif flags & BPF_F_MMAPABLE:
            sizes[map_name(info["map_id"].strip())] = entries * value
    return sizes


def map_name(map_id: str) -> str:
    out = subprocess.run(["bpftool", "map", "show", "id", map_id], capture_output=True, text=True).stdout
    match = re.search(r"name (\S+)", out)
    return match.group(1) if match else f"id {map_id}"


def first_flow_s(lab: Lab, launched_ns: int) -> float:
    with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        first = next(iter(stub.GetFlows(observer_pb2.GetFlowsRequest(first=True, number=1), timeout=30)))
    return (first.time.ToNanoseconds() - launched_ns) / 1e9


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the children a process has waited for: the compiler processes of a cold start
    (observer/datapath/compile_worker.py)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert match
    return int(match.group(1)) * 1024


def fill_ring(lab: Lab) -> None:
    """Send datagrams until the ring has wrapped (each datagram is two events: leaving and arriving)."""
    while server_status(lab).seen_flows < 2 * CAPACITY:
        udp64_pps(lab, 1)


@dataclass(frozen=True)
class Variant:
    """An agent to start: its command, and the flags that say which compile cache it uses (none for a checkout
    from before the cache)."""

    command: list[str]
    cache: Path | None = None  # a folder kept across the rounds: warm
    cold_cache: bool = False  # a new empty folder at every start: cold
    no_cache: bool = False  # compiled in the agent's process, as before the cache

    def flags(self, scratch: Path) -> list[str]:
        if self.no_cache:
            return ["--no-compile-cache"]
        if self.cold_cache:
            folder = Path(tempfile.mkdtemp(dir=scratch))
            return ["--compile-cache", str(folder)]
        return ["--compile-cache", str(self.cache)] if self.cache is not None else []


@contextmanager
def agent(lab: Lab, command: Sequence[str], flags: Sequence[str] = ()) -> Iterator[int]:
    """The lab's agent on node1 at monitor aggregation none (its pid), given as long as a busy machine needs."""
    lab.agent_command = list(command)
    (daemon,) = lab.start_agents(timeout=START_TIMEOUT_S, extra_args=["--monitor-aggregation", "none", *flags])
    try:
        yield daemon.pid
    finally:
        lab.stop(daemon)


def one_start(lab: Lab, command: Sequence[str], full_ring: bool, flags: Sequence[str] = ()) -> dict[str, object]:
    launched = time.time_ns()
    with agent(lab, command, flags) as pid:
        result: dict[str, object] = {
            "startup": first_flow_s(lab, launched),
            "cpu": cpu_seconds(pid),
            "cpu children": children_cpu_seconds(pid),
        }
        result["rss"], result["parts"], result["maps"] = rss(pid), smaps(pid), bpf_maps_mapped(pid)
        if full_ring:
            fill_ring(lab)
            result["rss full"], result["parts full"] = rss(pid), smaps(pid)
    return result


def table(label: str, runs: dict[str, list[dict[str, object]]], key: str) -> list[str]:
    names = list(runs)
    parts = sorted({part for results in runs.values() for r in results for part in r[key]})  # type: ignore[attr-defined]
    lines = [f"| {label}, MiB (median) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for part in parts:
        cells = [f"{median([r[key].get(part, 0) / MIB for r in results]):.1f}" for results in runs.values()]  # type: ignore[attr-defined]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout (set up) to measure beside this one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--full-ring", action="store_true", help="also measure memory with a full flow ring")
    args = parser.parse_args()

    this = [str(Path(__file__).resolve().parent.parent / ".venv/bin/flowscope")]
    scratch = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    variants = {
        "this checkout, --no-compile-cache": Variant(this, no_cache=True),
        "this checkout, cold": Variant(this, cold_cache=True),
        "this checkout, warm": Variant(this, scratch),
    }
    if args.before:
        variants = {"before": Variant([str(args.before.resolve() / ".venv/bin/flowscope")]), **variants}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
    with Lab(f"s{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns("client"), "ping", "-i", "0.01", lab.pod("server").ipv4],
            stdout=subprocess.DEVNULL,
        )
        try:
            one_start(lab, this, False, variants["this checkout, warm"].flags(scratch))  # fills the warm cache
            for round_number in range(args.rounds):
                order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
                for name in order:
                    variant = variants[name]
                    result = one_start(lab, variant.command, args.full_ring, variant.flags(scratch))
                    runs[name].append(result)
                    rss_full = f", full ring {result['rss full'] / MIB:.0f} MiB" if args.full_ring else ""  # type: ignore[operator]
                    print(
                        f"round {round_number + 1} {name}: start-up {result['startup']:.2f} s, "
                        f"RSS {result['rss'] / MIB:.0f} MiB{rss_full}",  # type: ignore[operator]
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            pinger.terminate()
            pinger.wait()
            shutil.rmtree(scratch, ignore_errors=True)

    names = list(runs)
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))

    def row(label: str, key: str, scale: float, fmt: str) -> None:
        cells = []
        for results in runs.values():
            values = [float(r[key]) / scale for r in results]  # type: ignore[arg-type]
            cells.append(f"**{format(median(values), fmt)}** ({format(min(values), fmt)} – {format(max(values), fmt)})")
        print(f"| {label} | " + " | ".join(cells) + " |")

    row("start-up: launch to first flow, s (median, range)", "startup", 1, ".2f")
    row("agent CPU time (user + system) when its first flow was read, s", "cpu", 1, ".2f")
    row("CPU time of the compiler processes it waited for, s", "cpu children", 1, ".2f")
    row("resident memory once serving, MiB", "rss", MIB, ".0f")
    if args.full_ring:
        row("resident memory, full ring, MiB", "rss full", MIB, ".0f")
    print()
    print("\n".join(table("resident memory once serving", runs, "parts")))
    if args.full_ring:
        print()
        print("\n".join(table("resident memory, full ring", runs, "parts full")))
    print()
    print("\n".join(table("BPF maps mapped into the agent", runs, "maps")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
