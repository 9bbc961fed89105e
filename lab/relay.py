"""The lab's relay: `flowscope relay` in the root namespace, where `flowscope observe` looks for it.

It finds the nodes through node1's peer service and reaches every agent through its unix socket (in the lab's
state folder), not over the underlay. Two reasons. The agents trace their node's `eth0`: a relay talking to
them over it would be traced too, and in follow mode each flow it carries makes packets that become flows it
carries: a loop that never settles. And the root namespace would need an address on the underlay, which every
lab numbers the same (10.77.0.0/24), so two labs could not both have one. Unix sockets leave the root
namespace's network untouched and cost nothing to clean up; the relay process is the one thing of a lab outside
its namespaces, which `lab down` stops by pid, or, when state.json is lost, by the lab folder its command line
names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from flowscope.lab.agent import default_command
from flowscope.lab.daemons import Daemon, DaemonError, is_alive
from flowscope.lab.services import Service
from flowscope.lab.topology import Topology

DEFAULT_ADDRESS = "localhost:4245"  # where `flowscope observe` looks first, as hubble's CLI does
HEALTH_SERVICE = "hubble.server.Observer"
ROOT_NETNS = ""  # a daemon started in the root network namespace


def free_address() -> str:
    """A localhost port nothing listens on now, for labs that must not take the user's 4245 (tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"localhost:{probe.getsockname()[1]}"


def relay_service(topology: Topology, address: str) -> Service:
    """node1's peer service names the nodes; each is dialed at its agent's socket."""
    first = topology.nodes[0].name
    template = str(topology.agent_socket("{name}"))
    argv = [*default_command(), "relay", "--listen-address", address]
    if "{name}" in template:
        argv += ["--peer-service", f"unix://{topology.agent_socket(first)}", "--peer-socket-template", template]
    else:  # a one-node lab on the CLI's default socket: nothing to discover
        argv += ["--peers", f"{first}=unix://{topology.agent_socket(first)}"]
    return Service("relay", ROOT_NETNS, argv)


def wait_relay(daemon: Daemon, address: str, nodes: int, timeout: float = 10.0, start_timeout: float = 15.0) -> int:
    """Wait until the relay answers health checks (or fail after start_timeout), then up to `timeout` more
    until it reaches every node.

    Returns how many nodes it reaches: the caller decides whether fewer is an error (agents that do not
    serve peer.Peer are found by no relay).
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from flowscope.api.observer import observer_pb2, observer_pb2_grpc

    deadline = time.monotonic() + start_timeout
    healthy = False
    connected = 0
    with grpc.insecure_channel(address) as channel:
        health_stub, observer = health_pb2_grpc.HealthStub(channel), observer_pb2_grpc.ObserverStub(channel)
        while True:
            if not is_alive(daemon):
                raise DaemonError(f"the relay exited; the end of {daemon.log}:\n{daemon.log_tail()}")
            try:
                if not healthy:
                    reply = health_stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=1.0)
                    healthy = reply.status == health_pb2.HealthCheckResponse.SERVING
                    deadline = time.monotonic() + timeout if healthy else deadline
                if healthy:
                    status = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=2.0)
                    connected = status.num_connected_nodes.value
                    if connected >= nodes:
                        return connected
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                if not healthy:
                    raise DaemonError(
                        f"the relay did not answer on {address} within {start_timeout:.0f}s; "
                        f"the end of {daemon.log}:\n{daemon.log_tail()}"
                    )
                return connected
            time.sleep(0.1)


def stop_strays(state_dir: Path) -> list[int]:
    """Kill relays in the root namespace whose command line names the lab's folder (ones nobody recorded).

    Processes inside the lab's namespaces are not touched here: removing the namespaces ends them.
    """
    mark, command = f"{state_dir}/".encode(), b"\0relay\0"
    root = os.stat("/proc/self/ns/net").st_ino
    killed = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino != root:
                continue
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmdline and command in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed
