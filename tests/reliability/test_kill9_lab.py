"""kill -9 under a follow stream, with real processes: a two-node lab, its agents and relay, and `flowscope
observe -f` reading through the relay as a person runs it.

An agent killed: the relay names the node on the client's stderr and the stream goes on; once the agent is
started again, that node's flows come back in the same stream. The relay killed: the client says it lost the
connection and retries (cli/observe/follow.py's backoff); once the relay is back on its address it follows
again, resuming after the last flow it printed, so what happened meanwhile still shows. Then `lab down` leaves
no process, namespace, socket or file of the lab.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # cli_runner
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))  # relay_lab

from cli_runner import start_flowscope
from relay_lab import agent_of, datagram, lab_name, wait_connected

from flowscope.lab import Lab
from flowscope.lab import netns as lab_netns
from flowscope.lab.daemons import Daemon, is_alive
from flowscope.lab.relay import free_address
from flowscope.lab.state import LabState
from flowscope.lab.topology import owns_netns

pytestmark = pytest.mark.bpf

KILLED = "node2"  # the server's node; the client is on node1


class Lines:
    """A stream's lines as they come, read by a thread, so a test waits for one with a deadline."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def until(self, *texts: str, timeout: float = 30.0) -> str:
        """The next line holding every one of `texts`, skipping others; fails past `timeout` saying what came."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {texts} in {timeout:g}s; the last ones: {self.seen[-8:]}") from None
            self.seen.append(line)
            if all(text in line for text in texts):
                return line


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # A fixed address, so a relay started again serves where the client keeps asking.
    with Lab(lab_name("kill9"), nodes=2, relay_address=free_address()) as lab:
        lab.up(traffic=False, agent=True, relay=True)
        wait_connected(lab.relay_address, 2)
        yield lab


@pytest.fixture
def observe(lab: Lab, tmp_path: Path) -> Iterator[tuple[Lines, Lines]]:
    """`flowscope observe -f` through the lab's relay, following the client pod's UDP flows, node names and
    every node status on; its (stdout, stderr), once it follows both nodes."""
    env = {"PATH": "/usr/bin:/bin", "FLOWSCOPE_DEFAULT_SOCKET_PATH": str(tmp_path / "no-agent.sock")}
    process = start_flowscope(
        "observe", "--server", lab.relay_address, "-f", "--pod", "default/client", "--protocol", "udp",
        "--print-node-name", "--debug", "-o", "compact", env=env,
    )  # fmt: skip
    try:
        out, err = Lines(process.stdout), Lines(process.stderr)
        err.until("Receiving flows from 2 nodes")
        yield out, err
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def exchange(lab: Lab, sport: int) -> None:
    """One datagram from the client pod (node1) to the server pod (node2) and its echo."""
    datagram(lab, "client", "server", sport)


def relay_of(lab: Lab) -> Daemon:
    state = LabState.load(lab.state_file)
    assert state is not None
    return next(d for d in reversed(state.daemons) if d.role == "relay" and is_alive(d))


def test_an_agent_killed_is_named_and_its_flows_come_back_in_the_same_stream(
    lab: Lab, observe: tuple[Lines, Lines]
) -> None:
    out, err = observe
    exchange(lab, 41101)
    out.until(f"[{KILLED}]", ":41101")  # both nodes are followed
    os.kill(agent_of(lab, KILLED).pid, signal.SIGKILL)
    named = err.until(KILLED)
    assert "1 nodes are unavailable: node2" in named or "on 1 nodes: node2" in named, named
    exchange(lab, 41102)
    out.until("[node1]", ":41102")  # the stream goes on without it
    lab.start_agents([KILLED])
    wait_connected(lab.relay_address, 2)
    assert "Receiving flows from 1 nodes: node2" in err.until("Receiving flows")
    exchange(lab, 41103)  # a new exchange: the new agent knows nothing of the old one
    out.until(f"[{KILLED}]", ":41103")


def test_the_relay_killed_is_retried_and_followed_again_from_the_last_flow(
    lab: Lab, observe: tuple[Lines, Lines]
) -> None:
    out, err = observe
    exchange(lab, 41201)
    out.until(f"[{KILLED}]", ":41201")
    os.kill(relay_of(lab).pid, signal.SIGKILL)
    lost = err.until("retrying in")
    assert "flowscope: connection lost: lost the connection to " in lost and lab.relay_address in lost, lost
    assert "still unreachable" in err.until("retrying in")  # asked again, and again with a longer wait
    exchange(lab, 41202)  # while the relay is away: the agents keep it, and the client resumes from before it
    lab.start_relay()
    wait_connected(lab.relay_address, 2)
    assert "restored; following again" in err.until("restored", timeout=30)
    out.until("[node1]", ":41202")
    out.until(f"[{KILLED}]", ":41202")
    exchange(lab, 41203)
    out.until(f"[{KILLED}]", ":41203")


def test_lab_down_leaves_nothing(lab: Lab) -> None:
    state = LabState.load(lab.state_file)
    assert state is not None
    started = list(state.daemons)
    sockets = [Path(socket) for socket in state.agents.values()]
    lab.down()
    assert not [d for d in started if is_alive(d)]
    assert not [name for name in lab_netns.existing() if owns_netns(lab.name, name)]
    assert not [socket for socket in sockets if socket.exists()]
    assert not lab.state_dir.exists()
    assert not _processes_naming(lab.state_dir)


def _processes_naming(folder: Path) -> list[int]:
    """Processes whose command line names the lab's folder (a relay or agent nobody recorded)."""
    mark, found = str(folder).encode(), []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
