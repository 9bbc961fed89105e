"""Does a follow client keep up with a busy agent, and when it does not, is every flow it missed reported?

    .venv/bin/python bench/follow_bench.py [--rates 25000 50000 100000] [--seconds 5] [--write]

A one-node lab without background traffic, its agent at monitor aggregation none (an event per packet and
observation point). `flowscope observe --follow -o jsonpb` reads the agent's socket into a pipe this bench
counts (flows, and the num_events_lost of every LostEvent), while iperf3 sends 64-byte UDP datagrams client →
server at a paced rate chosen so the agent ingests about the asked events/s. Once the flood ends and the agent's
count settles, the client is given time to drain. Per rate: events the agent ingested in the window (ServerStatus
seen_flows), what the kernel lost before the agent (kernel_buffer) and how much of it LostEvents told the client, the
flows the client printed, the events its other LostEvents reported (the agent's ring lapping the client), and the
difference that nobody accounted for (it must be 0: an event the agent took in is either delivered or reported
lost). The agent's and the client's CPU per flow are beside them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from common import FLOWSCOPE, agent, cpu_seconds, events_per_packet, flood, server_status, settle, update_results
from flowscope.lab import Lab

KERNEL = "PERF_EVENT_RING_BUFFER"  # lost before the agent: never among its ingested events


@dataclass
class Tally:
    """What the follow client printed so far: flows, and the events its LostEvents reported, by source."""

    flows: int = 0
    lines: int = 0
    lost: dict[str, int] = field(default_factory=dict)

    def lost_in(self, source: str) -> int:
        return self.lost.get(source, 0)


def count(pipe: BinaryIO, tally: Tally) -> None:
    """Counts the client's lines as they come: a flow per `{"flow":` line, a LostEvent's count from its line."""
    tail = b""
    while chunk := pipe.read1(1 << 20):  # type: ignore[attr-defined]
        data = tail + chunk
        cut = data.rfind(b"\n") + 1
        whole, tail = data[:cut], data[cut:]
        tally.lines += whole.count(b"\n")
        tally.flows += whole.count(b'{"flow":')
        if b"lost_events" in whole:  # a few lines a second: read whole
            for line in whole.splitlines():
                if line.startswith(b'{"lost_events":'):
                    lost = json.loads(line)["lost_events"]
                    source = lost.get("source", "UNKNOWN_LOST_EVENTS_SOURCE")
                    tally.lost[source] = tally.lost_in(source) + int(lost.get("num_events_lost", 0))


@dataclass(frozen=True)
class Run:
    """One rate for one checkout: what the agent took in, and what became of it at the client."""

    variant: str
    rate: float
    ingested: int
    seconds: float
    kernel_lost: int  # the agent's count of what its kernel ring buffer could not take
    kernel_reported: int  # LostEvents the client got for those (PERF_EVENT_RING_BUFFER)
    delivered: int
    reported_lost: int  # LostEvents the client got for events the agent had (its ring, its queues)
    agent_cpu_s: float
    client_cpu_s: float

    @property
    def unaccounted(self) -> int:
        """Events the agent took in that the client neither got nor was told it lost."""
        return self.ingested - self.delivered - self.reported_lost

    def cells(self) -> list[str]:
        return [
            self.variant,
            f"{self.rate:,.0f}",
            f"{self.ingested:,} ({self.ingested / self.seconds:,.0f}/s)",
            f"{self.kernel_lost:,} ({self.kernel_reported:,})",
            f"{self.delivered:,}",
            f"{self.reported_lost:,}",
            f"{self.unaccounted:,}",
            f"{self.agent_cpu_s / max(1, self.ingested) * 1e6:.1f}",
            f"{self.client_cpu_s / max(1, self.delivered) * 1e6:.1f}",
        ]


HEADER = [
    "",
    "asked events/s",
    "ingested (per s)",
    "kernel lost (reported to the client)",
    "delivered to the client",
    "reported lost (LostEvents)",
    "unaccounted",
    "agent CPU µs/event",
    "client CPU µs/flow",
]


def one_rate(lab: Lab, variant: str, flowscope: str, agent_pid: int, rate: float, seconds: float) -> Run:
    per_packet = events_per_packet(lab)
    client = subprocess.Popen(
        [flowscope, "observe", "--follow", "-o", "jsonpb", "--server", f"unix://{lab.agent_socket('node1')}"],
        stdout=subprocess.PIPE,
    )
    assert client.stdout is not None
    tally = Tally()
    reader = threading.Thread(target=count, args=(client.stdout, tally), daemon=True)
    reader.start()
    try:
        settle(lambda: tally.lines)  # connected, and what the agent had before is read
        start = server_status(lab)
        agent0, client0, flows0, lost0 = cpu_seconds(agent_pid), cpu_seconds(client.pid), tally.flows, dict(tally.lost)
        flood(lab, rate / per_packet, seconds)
        settle(lambda: server_status(lab).seen_flows)
        settle(lambda: tally.lines, quiet_s=2.0)
        end = server_status(lab)
        agent_cpu, client_cpu = cpu_seconds(agent_pid) - agent0, cpu_seconds(client.pid) - client0
    finally:
        client.terminate()
        client.wait(timeout=30)
        reader.join(timeout=30)
    lost = {source: n - lost0.get(source, 0) for source, n in tally.lost.items()}
    kernel_reported = lost.pop(KERNEL, 0)
    return Run(
        variant,
        rate,
        end.seen_flows - start.seen_flows,
        seconds,
        end.flowscope_lost.kernel_buffer - start.flowscope_lost.kernel_buffer,
        kernel_reported,
        tally.flows - flows0,
        sum(lost.values()),
        agent_cpu,
        client_cpu,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--before", type=Path, help="another checkout (set up): its agent and CLI beside this one's")
    parser.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    args = parser.parse_args()
    variants = {"this checkout": FLOWSCOPE}
    if args.before:
        variants["before"] = str(args.before.resolve() / ".venv/bin/flowscope")
    runs = []
    print(" | ".join(HEADER[1:]))
    with Lab("fbench") as lab:
        lab.up(traffic=False, agent=False)
        for rate in args.rates:
            for name, flowscope in variants.items():
                with agent(lab, "none", None if flowscope == FLOWSCOPE else [flowscope]) as pid:
                    runs.append(one_rate(lab, name, flowscope, pid, rate, args.seconds))
                print(" | ".join(runs[-1].cells()), flush=True)
    if args.write:
        rows = [HEADER, ["---"] * len(HEADER)] + [run.cells() for run in runs]
        command = " ".join([".venv/bin/python", "bench/follow_bench.py", *sys.argv[1:]])
        update_results(
            "A follow client under a flood (issue 15)",
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')}).\n\n"
            + "\n".join("| " + " | ".join(row) + " |" for row in rows),
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
