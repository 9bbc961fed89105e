"""The agent leaves nothing behind but its conntrack tables (for the next agent; `flowscope agent --uninstall`
removes them): after a clean exit, and after a kill -9 followed by a restart and exit.

"Nothing" is checked by identity, not by name (other agents may run on this machine): the ids of the programs
its tcx links hold and of the maps those programs use, its pin folder, its lock file, and any of its entry
programs on a device of its node's namespace. And a killed agent must not take the network with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowscope.common.paths import agent_lock_file
from flowscope.lab import Lab
from flowscope.observer.datapath.tc import ENTRY_PROGRAMS

pytestmark = pytest.mark.bpf


def node_netns_inode(lab: Lab) -> int:
    return os.stat(f"/run/netns/{lab.netns('node1')}").st_ino


def our_filters(lab: Lab) -> dict[str, list[int]]:
    """Our entry programs on the tcx hooks of the node's devices: "device direction name" -> program ids."""
    found: dict[str, list[int]] = {}
    for a in lab.attached_programs("node1"):
        if a.name in ENTRY_PROGRAMS:
            found.setdefault(f"{a.device} {a.direction} {a.name}", []).append(a.prog_id)
    return found


def bpf_object_exists(kind: str, object_id: int) -> bool:
    done = subprocess.run(["bpftool", kind, "show", "id", str(object_id)], capture_output=True, check=False)
    return done.returncode == 0


def objects_of(filters: dict[str, list[int]]) -> tuple[set[int], set[int]]:
    """Program ids held by the filters, and the ids of every map those programs use."""
    progs = {pid for ids in filters.values() for pid in ids}
    maps: set[int] = set()
    for pid in progs:
        info = json.loads(
            subprocess.run(
                ["bpftool", "-j", "prog", "show", "id", str(pid)], capture_output=True, text=True, check=True
            ).stdout
        )
        maps.update(info.get("map_ids", []))
    return progs, maps


def wait_gone(progs: set[int], maps: set[int], timeout: float = 10.0) -> None:
    """Programs and maps are freed after an RCU grace period, not at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in progs if bpf_object_exists("prog", p)] + [m for m in maps if bpf_object_exists("map", m)]
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"still loaded: programs {[p for p in progs if bpf_object_exists('prog', p)]}, "
        f"maps {[m for m in maps if bpf_object_exists('map', m)]}"
    )


def uninstall(lab: Lab) -> None:
    """After an agent's exit only its conntrack tables are left, for the next agent; `flowscope agent --uninstall`
    removes them (nsenter: the host's bpffs, not `ip netns exec`'s private /sys)."""
    folder = Path(f"/sys/fs/bpf/flowscope/netns-{node_netns_inode(lab)}")
    assert sorted(p.name for p in (folder / "conntrack").iterdir()) == ["ct4", "ct6", "ct_meta", "ct_used"]
    assert [p.name for p in folder.iterdir()] == ["conntrack"]
    flowscope = Path(sys.executable).parent / "flowscope"
    argv = ["nsenter", f"--net=/run/netns/{lab.netns('node1')}", str(flowscope), "agent", "--uninstall"]
    assert "conntrack tables included" in subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def assert_nothing_left(lab: Lab, progs: set[int], maps: set[int]) -> None:
    uninstall(lab)
    assert our_filters(lab) == {}
    wait_gone(progs, maps)
    inode = node_netns_inode(lab)
    assert not Path(f"/sys/fs/bpf/flowscope/netns-{inode}").exists()
    assert not agent_lock_file(inode).exists()
    assert not lab.agent_socket("node1").exists()


def pings(lab: Lab) -> bool:
    ip = lab.pod("server").ipv4
    return lab.exec("client", ["ping", "-c", "1", "-W", "1", ip], check=False).returncode == 0


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-life") as lab:
        lab.up(traffic=False, agent=False)
        yield lab


def test_clean_exit_leaves_nothing(lab: Lab) -> None:
    (agent,) = lab.start_agents()
    filters = our_filters(lab)
    assert len(filters) == 2 + 2 * len(lab.pods)  # eth0 and every pod's veth, both directions
    progs, maps = objects_of(filters)
    assert Path(f"/sys/fs/bpf/flowscope/netns-{node_netns_inode(lab)}/calls").exists()
    lab.stop(agent)  # SIGTERM
    assert_nothing_left(lab, progs, maps)


def test_kill_9_then_restart_and_exit_leaves_nothing(lab: Lab) -> None:
    (agent,) = lab.start_agents()
    first = our_filters(lab)
    old_progs, old_maps = objects_of(first)
    os.kill(agent.pid, 9)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{agent.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    lab.stop(agent)  # forget it
    # The killed agent's programs stay attached, and the network still works through them.
    assert our_filters(lab) == first
    assert pings(lab)

    (agent,) = lab.start_agents()  # reclaims, then attaches afresh
    second = our_filters(lab)
    assert set(second) == set(first)
    wait_gone(old_progs, old_maps)
    assert pings(lab)
    new_progs, new_maps = objects_of(second)
    lab.stop(agent)
    assert_nothing_left(lab, new_progs, new_maps)


def test_a_device_that_does_not_exist_is_warned_about(lab: Lab) -> None:
    """It may appear later (the agent attaches when it does), but a typo must not pass as `ready` in silence."""
    (agent,) = lab.start_agents(extra_args=["--device", "nosuch0"])
    assert "WARNING" in Path(agent.log).read_text().split("device nosuch0 does not exist")[0].splitlines()[-1]
    lab.stop(agent)
