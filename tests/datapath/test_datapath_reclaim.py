"""A killed agent's programs stay on their hooks and keep passing packets; reclaim() removes the pins of its
links and the rest of its pins but the conntrack tables, and then its programs are gone; uninstall() removes the
tables too."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dp_netns import VethPair, inside, run

from flowscope.observer.datapath import pins, reclaim, uninstall
from flowscope.observer.datapath.tc import attached_programs

pytestmark = pytest.mark.bpf

REPO = Path(__file__).resolve().parents[2]
AGENT = """
import json, sys, time
from flowscope.observer.datapath import Datapath, Hook, pins
from flowscope.observer.datapath.bpfsys import prog_info
dp = Datapath(pin_dir=pins.pin_dir())
dp.attach_endpoint(sys.argv[1], ep_id=1, identity=300)
names = [hook.program for hook in Hook] + list(dp.tail_call_slots.values())
ids = [prog_info(dp.program_fd(name)).id for name in names]
print(json.dumps(ids), flush=True)
time.sleep(600)
"""


def our_programs(veth: VethPair) -> list[str]:
    """The programs on the host-side veth's tcx hooks, by name."""
    with inside(veth.node):
        return sorted(a.name for a in attached_programs() if a.device == veth.host_if)


def pings(veth: VethPair) -> bool:
    return run("ping", "-c", "1", "-W", "1", veth.node_v4, netns=veth.pod, check=False).returncode == 0


def program_exists(prog_id: int) -> bool:
    return run("bpftool", "prog", "show", "id", str(prog_id), check=False).returncode == 0


def start_agent(veth: VethPair) -> tuple[subprocess.Popen[str], list[int]]:
    """A process that attaches to the pod's veth and waits; the ids of all its programs, once attached."""
    proc = subprocess.Popen(
        # nsenter, not `ip netns exec`: the agent must pin into the host's bpffs, not a private /sys.
        ["nsenter", f"--net=/run/netns/{veth.node}", sys.executable, "-c", AGENT, veth.host_if],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the agent did not attach within 60 s"
    return proc, json.loads(proc.stdout.readline())


def test_reclaim_removes_what_a_killed_agent_left(veth: VethPair) -> None:
    proc, prog_ids = start_agent(veth)
    with inside(veth.node):
        pin_folder = pins.pin_dir()
    try:
        assert our_programs(veth) == ["from_container", "to_container"]
        assert pings(veth)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert our_programs(veth) == ["from_container", "to_container"]
        assert program_exists(prog_ids[0])  # held by its pinned link
        # The tail-call array is pinned, so the orphaned programs still pass packets: a dead observer must
        # not take the network with it.
        assert pings(veth)
        assert (pin_folder / "calls").exists()

        with inside(veth.node):
            assert reclaim() == 2
            assert reclaim() == 0
        assert [p.name for p in pin_folder.iterdir()] == ["conntrack"]  # for the next agent to continue

        assert our_programs(veth) == []
        assert pings(veth)
        deadline = time.monotonic() + 10  # programs are freed after an RCU grace period
        while any(map(program_exists, prog_ids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [i for i in prog_ids if program_exists(i)] == []

        with inside(veth.node):
            assert uninstall() == (0, True)
        assert not pin_folder.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pins.remove(pin_folder)
