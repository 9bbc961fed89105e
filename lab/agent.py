"""Starting a node's flowscope agent inside the node's namespace, and waiting until it answers.

The agent attaches to the node's `eth0` and `lxc*` devices, which exist only in the node's namespace, so it
runs there; it is told about the cluster by the metadata file, and serves Hubble's API on a unix socket (in
the root filesystem, reachable from anywhere) and on port 4244 of the node's address (for a relay).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flowscope.common.paths import agent_lock_file
from flowscope.lab import netns
from flowscope.lab.daemons import Daemon, DaemonError, is_alive
from flowscope.lab.services import Service
from flowscope.lab.topology import AGENT_PORT, TUNNEL_DEVICE, Topology

HEALTH_SERVICE = "hubble.server.Observer"
# What one agent may take to answer with a CPU to itself: it compiles and loads its datapath first (~4 s on a
# quiet machine, most of it bcc compiling bpf/datapath.c; over 20 s measured while other test runs and benchmarks
# shared the two CPUs). Only a bound: the wait ends as soon as the agent answers.
AGENT_START_SECONDS = 60.0


def default_command() -> list[str]:
    """The `flowscope` command of the Python environment running us."""
    return [str(Path(sys.executable).parent / "flowscope")]


def agent_service(
    topology: Topology, node: str, command: Sequence[str] | None = None, extra_args: Sequence[str] = ()
) -> Service:
    """The agent of a node; `extra_args` go after the lab's own flags (a later flag wins)."""
    argv = [
        *(command or default_command()),
        "agent",
        "--node-name",
        node,
        "--cluster-file",
        str(topology.cluster_file),
        "--device",
        "eth0",
        "--socket",
        str(topology.agent_socket(node)),
        "--listen-address",
        f":{AGENT_PORT}",
    ]
    if topology.tunnel == "vxlan":
        argv += ["--tunnel-device", TUNNEL_DEVICE]
    if command is None:
        # A lab is for seeing its packets: a flow per packet and observation point rather than the agent's
        # default of aggregated reports (`flowscope config set monitor-aggregation medium` changes it live).
        # Only for the real agent: a stand-in command takes the flags it knows.
        argv += ["--monitor-aggregation", "none"]
    argv += extra_args
    # The host's mounts: the agent pins its tail-call map in the host's /sys/fs/bpf, so that a killed agent's
    # programs keep passing packets until the next agent reclaims them.
    return Service(f"agent-{node}", topology.node(node).netns, argv, host_mounts=True)


def leftovers(node_netns: str) -> list[Path]:
    """What an agent in this node namespace keeps in the host's filesystem after it exits or is killed: its pin
    folder (links, tail-call map, conntrack tables) and its lock file. Both are named after the namespace's
    inode, so they are found from inside it, while it exists."""
    from flowscope.observer.datapath import pins  # the datapath's imports are only for taking a lab down

    with netns.inside(node_netns):
        return [pins.pin_dir(), agent_lock_file(pins.netns_inode())]


def remove_leftovers(paths: Sequence[Path]) -> None:
    """Remove what `leftovers` found: pin folders as the datapath removes its own, lock files."""
    from flowscope.observer.datapath import pins

    for path in paths:
        if path.is_dir():
            pins.remove(path)
        else:
            path.unlink(missing_ok=True)


def prepare_socket(socket: Path) -> None:
    """Make the socket's directory, and refuse a socket another live agent is serving on."""
    socket.parent.mkdir(parents=True, exist_ok=True)
    if socket.exists() and check_health(socket):
        raise DaemonError(f"another agent already serves on {socket}; stop it (or its lab) first")


def check_health(socket: Path, timeout: float = 1.0) -> bool:
    """Whether an agent answers the standard gRPC health check on the socket with SERVING."""
    # grpc takes a fifth of a second to import: only labs with agents pay for it.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"unix://{socket}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def start_timeout(agents: int, cpus: int | None = None) -> float:
    """How long agents started together may take to answer: AGENT_START_SECONDS each, times how many of them
    share a CPU, since each compiles and loads its datapath at once and they queue for the CPUs."""
    per_cpu = agents / (cpus or os.cpu_count() or 1)
    return AGENT_START_SECONDS * max(1.0, per_cpu)


def wait_healthy(agents: Sequence[tuple[Daemon, Path]], timeout: float) -> None:
    """Wait until every agent answers on its socket; fail as soon as one exits, or when time is up, with the
    end of that agent's log (which says why)."""
    deadline = time.monotonic() + timeout
    waiting = list(agents)
    while waiting:
        for daemon, socket in list(waiting):
            if not is_alive(daemon):
                raise DaemonError(f"{daemon.role} exited; the end of {daemon.log}:\n{daemon.log_tail()}")
            if socket.exists() and check_health(socket):
                waiting.remove((daemon, socket))
        if waiting and time.monotonic() > deadline:
            daemon, socket = waiting[0]
            raise DaemonError(
                f"{daemon.role} did not answer {HEALTH_SERVICE} health checks on {socket} within {timeout:g}s "
                f"({len(agents)} agents started together); the end of {daemon.log}:\n{daemon.log_tail()}"
            )
        time.sleep(0.2)
