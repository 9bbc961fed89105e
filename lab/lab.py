"""A lab as one object: bring it up, look inside, run commands in its pods, take it down.

    with Lab("t1234", nodes=2) as lab:
        lab.up(traffic=False, agent=False)
        lab.exec("client", ["curl", f"http://{lab.pod('web').ipv4}/"])

`up` is all or nothing: when a step fails, what was made is removed before the error goes on. `down` needs
nothing but the lab's name: it stops the daemons state.json lists, kills whatever else runs in the lab's
namespaces and deletes them with what agents kept for them (pins, lock files), so it also works after `lab
up` or a daemon was killed with -9, or without state.json. A lab of several nodes with agents also gets a relay
(lab/relay.py), the one process it runs outside its namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from flowscope.lab import daemons, netns, network
from flowscope.lab import history as lab_history
from flowscope.lab.agent import agent_service, prepare_socket, remove_leftovers, start_timeout, wait_healthy
from flowscope.lab.agent import leftovers as agent_leftovers
from flowscope.lab.daemons import Daemon
from flowscope.lab.relay import DEFAULT_ADDRESS, free_address, relay_service, stop_strays, wait_relay
from flowscope.lab.services import Service, servers, traffic_generator, write_www
from flowscope.lab.state import LabState
from flowscope.lab.topology import LABS_DIR, Host, NodeHost, Pod, Topology, owns_netns, plan, validate_name


@dataclass(frozen=True)
class LabStatus:
    name: str
    state: LabState | None  # what state.json records, None when there is none
    topology: Topology
    netns_present: list[str]
    netns_missing: list[str]
    daemons: list[tuple[Daemon, bool]]  # (daemon, alive)

    @property
    def recorded(self) -> bool:
        return self.state is not None

    @property
    def agents(self) -> dict[str, str]:
        """Where each node's agent serves, as recorded when it was started."""
        return self.state.agents if self.state else {}

    @property
    def exists(self) -> bool:
        return self.recorded or bool(self.netns_present)

    @property
    def healthy(self) -> bool:
        return self.recorded and not self.netns_missing and all(alive for _, alive in self.daemons)


@dataclass(frozen=True)
class AttachedProgram:
    device: str
    direction: str  # "ingress" or "egress"
    prog_id: int
    name: str  # cut to 15 characters, as the kernel keeps it


class Lab:
    """One lab, known by its name: everything about it is derived from the name and the number of nodes."""

    def __init__(
        self,
        name: str = "lab",
        nodes: int = 1,
        agent_command: Sequence[str] | None = None,
        default_socket: bool = False,
        relay_address: str | None = None,
        tunnel: str = "disabled",
    ) -> None:
        """A lab of `nodes` nodes; `agent_command` replaces the `flowscope` command that runs agents;
        `default_socket` puts a one-node lab's agent on the CLI's default socket (as `flowscope lab up` does)
        and a relay on localhost:4245 (the CLI's default server), where other labs' relays take a free port
        unless `relay_address` says where; `tunnel` "vxlan" joins the nodes by an overlay (lab/network.py)."""
        self.topology = plan(name, nodes, default_socket, tunnel)
        self.name = name
        self.agent_command = list(agent_command) if agent_command else None
        self.default_socket = default_socket
        self._relay_address = relay_address

    @classmethod
    def existing(cls, name: str) -> Lab:
        """The lab of that name as `lab up` recorded it (one node when there is no record)."""
        state = LabState.load(LABS_DIR / validate_name(name) / "state.json")
        if state is None:
            return cls(name)
        return cls(name, nodes=state.nodes, default_socket=state.default_socket, tunnel=state.tunnel)

    # Where things are.

    @property
    def state_dir(self) -> Path:
        return self.topology.state_dir

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def cluster_file(self) -> Path:
        return self.topology.cluster_file

    @property
    def pods(self) -> tuple[Pod, ...]:
        return self.topology.pods

    @property
    def nodes(self) -> tuple[NodeHost, ...]:
        return self.topology.nodes

    @property
    def world(self) -> Host:
        return self.topology.world

    def pod(self, name: str) -> Pod:
        return self.topology.pod(name)

    def node(self, name: str) -> NodeHost:
        return self.topology.node(name)

    def netns(self, where: str) -> str:
        """The namespace of a pod, a node, `world` or `underlay`."""
        return self.topology.netns_of(where)

    def agent_socket(self, node: str) -> Path:
        return self.topology.agent_socket(node)

    @property
    def relay_address(self) -> str:
        """Where the lab's relay serves ("" when it has none)."""
        state = LabState.load(self.state_file)
        return state.relay if state else ""

    # Doing things in it.

    def exec(
        self,
        where: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a pod (or node, `world`, `underlay`) and return what it printed."""
        return subprocess.run(
            netns.exec_argv(self.netns(where), argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def attached_programs(self, node: str) -> list[AttachedProgram]:
        """The BPF programs on the tcx hooks of a node's devices (the agent's entry programs, and any other)."""
        found = []
        for line in self.exec(node, [sys.executable, "-m", "flowscope.observer.datapath"]).stdout.splitlines():
            device, direction, _, prog_id, _, name = line.split()
            found.append(AttachedProgram(device, direction, int(prog_id), name))
        return found

    def start(self, where: str, argv: Sequence[str], role: str, ports: Iterable[tuple[str, int]] = ()) -> Daemon:
        """Start a daemon in a pod (or host) that `down` will stop; wait until it binds `ports`."""
        service = Service(role, self.netns(where), list(argv), tuple(ports))
        return self._start([service])[0]

    def start_agents(
        self, nodes: Iterable[str] | None = None, timeout: float | None = None, extra_args: Sequence[str] = ()
    ) -> list[Daemon]:
        """Start the agent of each node (all by default), with `extra_args` on its command line, and wait until
        each answers its health check: within `timeout` seconds, by default a time that grows with the number
        of agents sharing this machine's CPUs."""
        names = list(nodes) if nodes is not None else [node.name for node in self.nodes]
        state = self._state()
        for name in names:
            prepare_socket(self.agent_socket(name))
            state.agents[name] = str(self.agent_socket(name))
        state.save(self.state_file)
        services = [agent_service(self.topology, name, self.agent_command, extra_args) for name in names]
        started = self._start(services)
        sockets = [self.agent_socket(name) for name in names]
        timeout = start_timeout(len(names)) if timeout is None else timeout
        wait_healthy(list(zip(started, sockets, strict=True)), timeout)
        return started

    def start_relay(self, timeout: float = 10.0) -> Daemon:
        """Start the lab's relay in the root namespace; wait until it answers and (within timeout) reaches
        every node, which it does when the agents serve peer.Peer. With the lab's ClickHouse (`up(history=
        True)`), the relay writes the merged flows there and answers history questions from it."""
        address = self._relay_address or (DEFAULT_ADDRESS if self.default_socket else free_address())
        state = self._state()
        state.relay = address
        state.save(self.state_file)
        service = relay_service(self.topology, address)
        if (history_url := lab_history.lab_url(self.state_dir)) is not None:
            service.argv.extend(["--export-clickhouse", history_url, "--history", history_url])
        (daemon,) = self._start([service])
        wait_relay(daemon, address, len(self.nodes), timeout)
        return daemon

    def stop(self, daemon: Daemon) -> None:
        """Stop one daemon (an agent to restart, say) and forget it."""
        daemons.stop([daemon])
        state = self._state()
        state.daemons = [d for d in state.daemons if d.pid != daemon.pid]
        state.save(self.state_file)

    # Its life.

    def up(self, *, traffic: bool = True, agent: bool = True, relay: bool | None = None, history: bool = False) -> Lab:
        """Build the lab (removing an earlier one of the same name first); all or nothing.

        `relay` defaults to: the lab of `flowscope lab up` (default_socket) with agents and several nodes, or
        with `history` (a ClickHouse of the lab's own, lab/history.py, which the relay writes).
        """
        if relay is None:
            relay = (self.default_socket and agent and len(self.nodes) > 1) or (history and agent)
        self.down()
        topology = self.topology
        state = LabState(
            self.name,
            len(topology.nodes),
            cluster_file=str(self.cluster_file),
            traffic=traffic,
            default_socket=self.default_socket,
            tunnel=topology.tunnel,
        )
        state.netns = topology.netns_names()
        state.save(self.state_file)  # before anything exists, so an interrupted `up` is found again
        try:
            netns.add(topology.netns_names())
            network.build(topology)
            topology.cluster().save(self.cluster_file)
            write_www(topology)
            if history:
                lab_history.start_for_lab(self.state_dir)
            self._start(servers(topology))
            if agent:
                self.start_agents()
            if traffic:
                self._start([traffic_generator(topology, services=agent)])
            if relay:
                self.start_relay()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Stop the lab's daemons, remove its namespaces, what agents left for them (also when killed) and its
        state directory. Safe to repeat."""
        state = LabState.load(self.state_file)
        recorded = state.netns if state else []
        if state:
            daemons.stop(state.daemons)
        stop_strays(self.state_dir)
        present = netns.existing()
        owned = [name for name in present if owns_netns(self.name, name)]
        doomed = sorted({*recorded, *owned})
        # Named after the namespaces, so found before they go; an agent may have run in any of them.
        left = [path for name in doomed if name in present for path in agent_leftovers(name)]
        netns.remove(doomed)
        remove_leftovers(left)
        for socket in state.agents.values() if state else []:
            Path(socket).unlink(missing_ok=True)
        lab_history.stop_for_lab(self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def status(self) -> LabStatus:
        state = LabState.load(self.state_file)
        topology = plan(self.name, state.nodes, state.default_socket, state.tunnel) if state else self.topology
        present = set(netns.existing())
        expected = topology.netns_names()
        owned = sorted(name for name in present if owns_netns(self.name, name))
        return LabStatus(
            name=self.name,
            state=state,
            topology=topology,
            netns_present=owned,
            netns_missing=[name for name in expected if name not in present] if state else [],
            daemons=[(d, daemons.is_alive(d)) for d in state.daemons] if state else [],
        )

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.down()

    def _state(self) -> LabState:
        state = LabState.load(self.state_file)
        if state is None:
            raise RuntimeError(f"lab {self.name} is not up")
        return state

    def _start(self, services: Sequence[Service]) -> list[Daemon]:
        """Start services together, record them, then wait until each listens on its ports."""
        state = self._state()
        logs = self.state_dir / "logs"
        started = [daemons.spawn(s.role, s.netns, s.argv, logs / f"{s.role}.log", s.host_mounts) for s in services]
        state.daemons += started
        state.save(self.state_file)
        for service, daemon in zip(services, started, strict=True):
            daemons.wait_listening(daemon, service.ports)
        return started
