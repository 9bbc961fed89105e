"""Helpers for kernel drop tests: scratch network namespaces, drops made on purpose, and the agent's answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from integration.flows_helpers import stub

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab
from flowscope.observer.datapath.ringbuf import RingReader

# Send `count` UDP datagrams from a fixed source port to a port nobody listens on: each one is a NO_SOCKET drop
# where it arrives. Prints how long the sending took. (A datagram a firewall drops on the way out fails with
# EPERM: that is a drop too, not an error of the test.)
UDP_TO_CLOSED_PORT = """
import socket, sys, time
host, port, sport, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    start = time.monotonic()
    for i in range(count):
        try:
            s.sendto(b"kernel drop %05d" % i, (host, port))
        except PermissionError:
            pass
    print(time.monotonic() - start)
"""


def scratch_netns(word: str) -> str:
    """A network namespace with loopback up, named so tests/conftest.py sweeps it after a killed run."""
    name = f"fs-t{os.getpid()}-{word}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
    return name


def remove_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def send_in(netns: str, host: str, port: int, sport: int, count: int = 1, cpu: int = 0) -> float:
    """UDP to a closed port, from inside `netns`, on one CPU (so every drop lands in that CPU's bucket)."""
    argv = ["ip", "netns", "exec", netns, "taskset", "-c", str(cpu), sys.executable, "-c", UDP_TO_CLOSED_PORT]
    done = subprocess.run([*argv, host, str(port), str(sport), str(count)], capture_output=True, text=True, check=True)
    return float(done.stdout)


def send_from_pod(lab: Lab, pod: str, host: str, port: int, sport: int, count: int = 1, cpu: int = 0) -> float:
    argv = ["taskset", "-c", str(cpu), sys.executable, "-c", UDP_TO_CLOSED_PORT, host, str(port), str(sport)]
    return float(lab.exec(pod, [*argv, str(count)], timeout=60).stdout)


def read_until(reader: RingReader, done: Callable[[np.ndarray], bool], timeout: float = 3.0) -> np.ndarray:
    """Records from a ring buffer until `done(records)` or the timeout (the program never wakes its reader)."""
    batches: list[np.ndarray] = []
    deadline = time.monotonic() + timeout
    while True:
        batches.append(reader.read_batch(0.05))
        records = np.concatenate(batches)
        if done(records) or time.monotonic() > deadline:
            return records


# The agent, through its gRPC API.


def rate_limited(lab: Lab, node: str = "node1") -> int:
    status = stub(lab, node).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    return int(status.flowscope_lost.rate_limited)


def kernel_drops(port: int) -> flow_pb2.FlowFilter:
    """The DROPPED flows to a port (the kernel drops of a test; the tc datapath reports none of these)."""
    return flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], destination_port=[str(port)])


def packets_of(flow: flow_pb2.Flow) -> int:
    """How many drops a report stands for: its aggregate count, or one."""
    return int(flow.flowscope.packets) if flow.flowscope.aggregated else 1
