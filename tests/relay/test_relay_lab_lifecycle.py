"""The lab's relay: it runs in the root namespace but adds nothing to its network, and `lab down` stops it,
also when nothing recorded it (state.json lost after a kill -9)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_lab import lab_name

from flowscope.lab import Lab
from flowscope.lab.daemons import is_alive
from flowscope.lab.relay import relay_service
from flowscope.lab.state import LabState


def root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def relays_of(lab: Lab) -> list[int]:
    """Processes whose command line is a relay naming the lab's folder."""
    mark = f"{lab.state_dir}/".encode()
    found = []
    for entry in os.scandir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes() if entry.name.isdigit() else b""
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0] if cmdline else "Z"
        except OSError:
            continue
        if state != "Z" and mark in cmdline and b"\0relay\0" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def lab(needs_root: None) -> Iterator[Lab]:
    with Lab(lab_name("relaylife"), nodes=3) as lab:
        yield lab


def test_the_relay_serves_the_root_namespace_and_adds_nothing_to_its_network(lab: Lab) -> None:
    links = root_links()
    lab.up(traffic=False, agent=False, relay=False)
    daemon = lab.start_relay(timeout=0.5)  # no agents: it answers, with no node to reach
    assert is_alive(daemon) and lab.relay_address.startswith("localhost:")
    assert os.stat(f"/proc/{daemon.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    assert root_links() == links
    assert lab.status().healthy
    assert relay_service(lab.topology, "localhost:1").argv[-4:] == [
        "--peer-service",
        f"unix://{lab.agent_socket('node1')}",
        "--peer-socket-template",
        f"{lab.state_dir}/{{name}}/hubble.sock",
    ]
    lab.down()
    assert relays_of(lab) == [] and root_links() == links


def test_down_stops_a_relay_nobody_recorded(lab: Lab) -> None:
    lab.up(traffic=False, agent=False, relay=False)
    lab.start_relay(timeout=0.5)
    assert len(relays_of(lab)) == 1
    lab.state_file.unlink()  # as if `lab up` died before it could say what it started
    Lab(lab.name).down()
    deadline = time.monotonic() + 3
    while relays_of(lab):
        assert time.monotonic() < deadline, "the relay outlived its lab"
        time.sleep(0.05)
    assert LabState.load(lab.state_file) is None
