"""Starting a node's flowscope agent inside the node's namespace, and waiting until it answers.

The agent attaches to the node's `eth0` and `lxc*` devices, which exist only in the node's namespace, so it
runs there; it is told about the cluster by the metadata file, and serves Hubble's API on a unix socket (in
the root filesystem, reachable from anywhere) and on port 4244 of the node's address (for a relay).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flowscope.lab.daemons import Daemon, DaemonError, is_alive
from flowscope.lab.services import Service
from flowscope.lab.topology import AGENT_PORT, Topology

HEALTH_SERVICE = "hubble.server.Observer"


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
    if command is None:
        # A lab is for seeing its packets: a flow per packet and observation point rather than the agent's
        # default of aggregated reports (`flowscope config set monitor-aggregation medium` changes it live).
        # Only for the real agent: a stand-in command takes the flags it knows.
        argv += ["--monitor-aggregation", "none"]
    argv += extra_args
    # The host's mounts: the agent pins its tail-call map in the host's /sys/fs/bpf, so that a killed agent's
    # programs keep passing packets until the next agent reclaims them.
    return Service(f"agent-{node}", topology.node(node).netns, argv, host_mounts=True)


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


def wait_healthy(daemon: Daemon, socket: Path, timeout: float = 20.0) -> None:
    """Wait until the agent answers on its socket; fail early if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(daemon):
            raise DaemonError(f"{daemon.role} exited; the end of {daemon.log}:\n{daemon.log_tail()}")
        if socket.exists() and check_health(socket):
            return
        if time.monotonic() > deadline:
            raise DaemonError(
                f"{daemon.role} did not answer {HEALTH_SERVICE} health checks on {socket} "
                f"within {timeout:.0f}s; the end of {daemon.log}:\n{daemon.log_tail()}"
            )
        time.sleep(0.2)
