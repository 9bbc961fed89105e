"""`lab up` and `lab down`: exactly the lab's namespaces come and go, and down works after anything died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_helpers import PROJECT, assert_nothing_left, cli, lab_netns, lab_processes, root_links

from flowscope.lab import Lab, netns
from flowscope.lab.agent import check_health, start_timeout
from flowscope.lab.agent import leftovers as agent_leftovers
from flowscope.lab.daemons import DaemonError, is_alive
from flowscope.lab.state import LabState

pytestmark = pytest.mark.netns

FAKE_AGENT = [sys.executable, str(Path(__file__).with_name("fake_agent.py"))]


def test_up_and_down_make_and_remove_exactly_the_labs_namespaces(fresh_name: str) -> None:
    namespaces, links = set(netns.existing()), root_links()
    lab = Lab(fresh_name, nodes=2)
    started = time.monotonic()
    lab.up(traffic=True, agent=False)
    took_up = time.monotonic() - started
    assert set(netns.existing()) - namespaces == set(lab.topology.netns_names())
    assert namespaces <= set(netns.existing())
    assert root_links() == links  # nothing in the root namespace
    state = LabState.load(lab.state_file)
    assert state is not None
    assert {d.role for d in state.daemons} == {"dns", "http-web", "http-web2", "http-world", "echo", "traffic"}
    assert all(is_alive(d) for d in state.daemons)
    started = time.monotonic()
    lab.down()
    took_down = time.monotonic() - started
    assert set(netns.existing()) == namespaces
    assert_nothing_left(fresh_name)
    assert took_up < 5 and took_down < 5, (took_up, took_down)


def test_up_on_an_existing_name_replaces_the_lab(fresh_name: str) -> None:
    first = Lab(fresh_name).up(traffic=False, agent=False)
    old = LabState.load(first.state_file)
    assert old is not None
    second = Lab(fresh_name, nodes=2).up(traffic=False, agent=False)
    assert not any(is_alive(d) for d in old.daemons)
    assert sorted(lab_netns(fresh_name)) == sorted(second.topology.netns_names())
    second.down()
    assert_nothing_left(fresh_name)


def test_the_cli_lab_outlives_the_command_and_down_cleans_up_after_kill_9(fresh_name: str) -> None:
    up = cli("up", "--name", fresh_name, "--nodes", "2", "--no-agent")
    assert up.returncode == 0, up.stderr
    assert "client" in up.stdout and "10.200.1.11" in up.stdout
    lab = Lab(fresh_name, nodes=2)
    # Usable right after `lab up` returned, though its process is gone.
    lab.exec("client", ["curl", "-sS", "--max-time", "5", f"http://{lab.pod('web').ipv4}/"])
    state = LabState.load(lab.state_file)
    assert state is not None and all(is_alive(d) for d in state.daemons)
    for daemon in state.daemons:
        if daemon.role in ("traffic", "dns"):
            os.kill(daemon.pid, signal.SIGKILL)
    lab.state_file.unlink()
    down = cli("down", "--name", fresh_name)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(fresh_name)


def test_down_cleans_up_after_lab_up_itself_was_killed(fresh_name: str) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "flowscope.cli.lab", "up", "--name", fresh_name, "--no-agent"],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not lab_netns(fresh_name) and time.monotonic() < deadline:
        time.sleep(0.005)
    up.kill()
    up.wait()
    assert lab_netns(fresh_name), "lab up never got as far as making namespaces"
    down = cli("down", "--name", fresh_name)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(fresh_name)


def test_down_without_a_lab_is_fine(fresh_name: str) -> None:
    assert cli("down", "--name", fresh_name).returncode == 0
    assert_nothing_left(fresh_name)


def test_status(fresh_name: str) -> None:
    assert cli("status", "--name", fresh_name).returncode == 1
    lab = Lab(fresh_name, nodes=2).up(traffic=True, agent=False)
    status = cli("status", "--name", fresh_name)
    assert status.returncode == 0, status.stdout
    for pod in lab.pods:
        assert pod.ipv4 in status.stdout and pod.ipv6 in status.stdout and pod.ifname in status.stdout
    assert "node2" in status.stdout and "DEAD" not in status.stdout
    state = LabState.load(lab.state_file)
    assert state is not None
    traffic = next(d for d in state.daemons if d.role == "traffic")
    os.kill(traffic.pid, signal.SIGKILL)
    time.sleep(0.1)
    status = cli("status", "--name", fresh_name)
    assert status.returncode == 1 and "DEAD" in status.stdout
    lab.down()
    status = cli("status", "--name", fresh_name)
    assert status.returncode == 1 and "not up" in status.stdout


def test_agents_start_in_their_node_and_answer_health_checks(fresh_name: str) -> None:
    lab = Lab(fresh_name, nodes=2, agent_command=FAKE_AGENT).up(traffic=False, agent=True)
    state = LabState.load(lab.state_file)
    assert state is not None
    agents = [d for d in state.daemons if d.role.startswith("agent-")]
    assert [d.netns for d in agents] == [lab.netns("node1"), lab.netns("node2")]
    for daemon, node in zip(agents, ("node1", "node2"), strict=True):
        assert os.stat(f"/proc/{daemon.pid}/ns/net").st_ino == os.stat(f"/run/netns/{daemon.netns}").st_ino
        assert daemon.argv[-10:] == [
            "--node-name",
            node,
            "--cluster-file",
            str(lab.cluster_file),
            "--device",
            "eth0",
            "--socket",
            str(lab.agent_socket(node)),
            "--listen-address",
            ":4244",
        ]
        assert check_health(lab.agent_socket(node))
        mounts = Path(f"/proc/{daemon.pid}/mountinfo").read_text()
        assert " /sys/kernel/tracing " in mounts and " /sys/fs/bpf " in mounts
    lab.stop(agents[0])  # restart one, as agent tests will
    assert not check_health(lab.agent_socket("node1"))
    (restarted,) = lab.start_agents(["node1"])
    assert check_health(lab.agent_socket("node1"))
    assert lab.status().healthy
    assert restarted.pid in {d.pid for d, alive in lab.status().daemons if alive}
    lab.down()
    assert not any(lab.agent_socket(n.name).exists() for n in lab.nodes)
    assert_nothing_left(fresh_name)


def test_an_agent_that_fails_takes_the_lab_down_and_says_why(fresh_name: str, tmp_path: Path) -> None:
    failing = tmp_path / "agent"
    failing.write_text("#!/bin/sh\necho 'cannot load the datapath' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(DaemonError, match="cannot load the datapath"):
        Lab(fresh_name, nodes=2, agent_command=[str(failing)]).up(traffic=False, agent=True)
    assert_nothing_left(fresh_name)
    assert not lab_processes(fresh_name)


def test_an_agent_that_does_not_answer_in_time_shows_the_end_of_its_log(fresh_name: str, tmp_path: Path) -> None:
    silent = tmp_path / "agent"
    silent.write_text('#!/bin/sh\nfor i in $(seq 1 30); do echo "starting, step $i"; done\nexec sleep 600\n')
    silent.chmod(0o755)
    lab = Lab(fresh_name, nodes=2, agent_command=[str(silent)]).up(traffic=False, agent=False)
    with pytest.raises(DaemonError) as failed:
        lab.start_agents(timeout=0.5)
    message = str(failed.value)
    assert "did not answer" in message and "within 0.5s (2 agents started together)" in message
    assert "step 30" in message and "step 16" in message and "step 15\n" not in message
    lab.down()
    assert_nothing_left(fresh_name)


def test_a_bad_agent_argument_is_reported_with_the_agents_own_words(fresh_name: str) -> None:
    lab = Lab(fresh_name, agent_command=FAKE_AGENT).up(traffic=False, agent=False)
    with pytest.raises(DaemonError, match=r"agent-node1 exited(.|\n)*unrecognized arguments: --bogus"):
        lab.start_agents(extra_args=["--bogus"])
    lab.down()
    assert_nothing_left(fresh_name)


def test_the_start_up_wait_grows_with_the_agents_sharing_a_cpu() -> None:
    one = start_timeout(1, cpus=2)
    assert one >= 20
    assert start_timeout(2, cpus=2) == one
    assert start_timeout(10, cpus=2) == 5 * one
    assert start_timeout(250, cpus=2) == 125 * one


def test_down_after_a_kill_9_removes_what_the_agent_kept_for_its_node(fresh_name: str) -> None:
    """The agent's pins (links, tail calls, conntrack tables) and lock file outlive it on purpose; down
    removes those of the lab's namespaces."""
    lab = Lab(fresh_name).up(traffic=False, agent=True)
    kept = agent_leftovers(lab.netns("node1"))
    state = LabState.load(lab.state_file)
    assert state is not None
    (agent,) = [d for d in state.daemons if d.role == "agent-node1"]
    os.kill(agent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_alive(agent) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(path.exists() for path in kept), kept
    down = cli("down", "--name", fresh_name)
    assert down.returncode == 0, down.stderr
    assert [path for path in kept if path.exists()] == []
    assert_nothing_left(fresh_name)
