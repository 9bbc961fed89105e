"""Connections outlive the agent: a TCP connection opened before an agent stops (SIGTERM) or is killed (kill -9)
still has its replies reported as replies by the next agent, since the conntrack tables stay pinned; tables of
another layout are replaced by empty ones, and `flowscope agent --uninstall` removes them
(observer/datapath/ct_pins.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_control import connection, flows, now, open_connection
from waiting import eventually, wait_for

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.daemons import Daemon
from flowscope.lab.topology import TCP_RR_PORT

pytestmark = pytest.mark.bpf

FLOWSCOPE = Path(sys.executable).parent / "flowscope"


def pin_folder(lab: Lab) -> Path:
    inode = os.stat(f"/run/netns/{lab.netns('node1')}").st_ino
    return Path(f"/sys/fs/bpf/flowscope/netns-{inode}")


def uninstall(lab: Lab) -> str:
    """`flowscope agent --uninstall` in the node's namespace (nsenter: the host's bpffs, not a private /sys)."""
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{lab.netns('node1')}", str(FLOWSCOPE), "agent", "--uninstall"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A lab whose agents the tests start; taking it down removes the pins too, also when a test fails."""
    with Lab(f"t{os.getpid()}-ctre") as lab:
        lab.up(traffic=False, agent=False)
        yield lab


def kill_9(lab: Lab, agent: Daemon) -> None:
    os.kill(agent.pid, 9)
    wait_for(lambda: dead(agent.pid))
    lab.stop(agent)  # forget it


def dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet (its files, the agent's lock among them, are closed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize("stop", ["SIGTERM", "kill -9"])
def test_replies_stay_replies_across_a_restart(lab: Lab, stop: str) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    sport = 41000 + (stop == "kill -9")
    (agent,) = lab.start_agents()
    with open_connection(lab, "client", server.ipv4, TCP_RR_PORT, sport) as opened:
        if stop == "SIGTERM":
            lab.stop(agent)
        else:
            kill_9(lab, agent)
        assert (pin_folder(lab) / "conntrack" / "ct4").exists()
        (agent,) = lab.start_agents()
        since = now()
        assert opened.ask() == "ok"

        def answers() -> list[flow_pb2.Flow]:
            found = flows(lab, *connection(client.ipv4, sport), since=since)
            return [f for f in found if f.IP.source == server.ipv4 and f.verdict == flow_pb2.FORWARDED]

        assert eventually(lambda: len(answers()) > 0, timeout=10)
        seen = {(f.is_reply.value, flow_pb2.TraceReason.Name(f.trace_reason)) for f in answers()}
        assert seen == {(True, "REPLY")}
    lab.stop(agent)


def test_tables_of_another_layout_are_replaced(lab: Lab) -> None:
    tables = pin_folder(lab) / "conntrack"
    tables.mkdir(parents=True, exist_ok=True)
    shape = ["type", "array", "key", "4", "value", "8", "entries", "16", "name", "ct4"]
    subprocess.run(["bpftool", "map", "create", str(tables / "ct4"), *shape], check=True)
    (agent,) = lab.start_agents()
    log = Path(agent.log).read_text()
    assert "do not fit this agent (ct4 has 8-byte values and 16 entries" in log
    lab.stop(agent)
    shown = subprocess.run(["bpftool", "map", "show", "pinned", str(tables / "ct4")], capture_output=True, text=True)
    assert "max_entries 65536" in shown.stdout
    (agent,) = lab.start_agents()  # the next agent continues what this one made
    assert "continuing the connections" in Path(agent.log).read_text()
    lab.stop(agent)
    assert "conntrack tables included" in uninstall(lab)
    assert not pin_folder(lab).exists()
