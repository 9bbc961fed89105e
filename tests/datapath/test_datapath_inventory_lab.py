"""`flowscope bpf` against a real two-node lab: every node's agent answers with the programs on its devices'
tcx hooks, the `calls` slots holding calls.h's stages, its maps with their fill; with --stats, the entry
programs' runs over the window, and kernel BPF statistics are off again afterwards (also after Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cli.cli_runner import run_flowscope, start_flowscope  # tests/ is on the path (its conftest)
from conntrack.agent_control import TCP_CLIENT, control, run_python
from waiting import wait_for

from flowscope.api.control import control_pb2
from flowscope.lab import Lab, netns
from flowscope.lab.topology import TCP_RR_PORT
from flowscope.observer.datapath.bpfsys import prog_info_by_id
from flowscope.observer.datapath.c_source import tail_call_slots

pytestmark = pytest.mark.bpf

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
NAME_LEN = 15  # the kernel keeps a program's name to 15 characters


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-bpf", nodes=2) as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def inventories(lab: Lab, *flags: str) -> dict[str, Any]:
    done = run_flowscope("bpf", "--lab", lab.name, "-o", "json", *flags, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def programs(inventory: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in inventory["programs"]}


def on_hooks(inventory: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(device, direction) -> the names of the programs on that hook."""
    named = programs(inventory)
    return {(h["device"], h["direction"]): [named[i]["name"] for i in h["program_ids"]] for h in inventory["hooks"]}


def connect(lab: Lab, requests: int = 20) -> None:
    """A real TCP connection from the client pod to the server pod (on another node), `requests` round trips."""
    server = lab.pod("server")
    done = run_python(lab, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, 41000 + requests, requests)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_node_shows_its_hooks_slots_and_maps(lab: Lab) -> None:
    connect(lab)
    found = inventories(lab)
    assert sorted(found) == ["node1", "node2"]
    stages = tail_call_slots()
    for node, inventory in found.items():
        assert inventory["node"] == node
        hooks = on_hooks(inventory)
        assert hooks[("eth0", "ingress")] == ["from_netdev"]
        assert hooks[("eth0", "egress")] == ["to_netdev"]
        pods = [pod for pod in lab.pods if pod.node == node]
        assert pods
        for pod in pods:
            assert hooks[(pod.ifname, "ingress")] == ["from_container"]
            assert hooks[(pod.ifname, "egress")] == ["to_container"]
        maps = {m["name"]: m for m in inventory["maps"]}
        calls = maps["calls"]
        assert calls["type"] == "prog_array" and calls["used"] == str(len(stages))
        named = programs(inventory)
        assert {s["slot"]: s["stage"] for s in calls["slots"]} == stages
        assert {s["slot"]: named[s["program_id"]]["name"] for s in calls["slots"]} == {
            slot: stage[:NAME_LEN] for slot, stage in stages.items()
        }
        assert calls["pinned"].endswith("/calls") and calls["pinned"].startswith("/sys/fs/bpf/flowscope/netns-")
        assert maps["ct4"]["pinned"].endswith("/conntrack/ct4")
        assert maps["events"]["type"] == "ringbuf" and maps["events"]["max_entries"] == 4 << 20
        assert maps["events"]["counted"] is True
        assert maps["config"]["counted"] is False  # an array: every slot exists
        assert maps["ipcache"]["type"] == "lpm_trie" and int(maps["ipcache"]["used"]) >= len(lab.pods)
        if node in (lab.pod("client").node, lab.pod("server").node):  # the connection, at least
            assert 0 < int(maps["ct4"]["used"]) <= maps["ct4"]["max_entries"]
        entry = next(p for p in named.values() if p["name"] == "from_container")
        assert calls["id"] in entry["map_ids"]
        assert any(p["type"] == "tracepoint" for p in named.values())  # the kernel drop program
        assert all(p["held"] for p in named.values())


def test_stats_count_the_window_and_are_off_afterwards(lab: Lab) -> None:
    assert STATS.read_text().strip() == "0"
    client = lab.pod("client")
    ping = ["ping", "-q", "-i", "0.02", "-w", "20", lab.pod("server").ipv4]
    pinger = subprocess.Popen(netns.exec_argv(client.netns, ping), stdout=subprocess.DEVNULL)
    try:
        node = inventories(lab, "--stats", "2s")[client.node]
    finally:
        pinger.kill()
        pinger.wait(timeout=5)
    assert node["stats_window"] == "2s"
    named = programs(node)
    hooks = {h["direction"]: h["program_ids"][0] for h in node["hooks"] if h["device"] == client.ifname}
    for program_id in hooks.values():
        runs, time_ns = int(named[program_id]["run_count"]), int(named[program_id]["run_time_ns"])
        assert runs >= 50, named[program_id]  # a ping every 20 ms for 2 s, each way
        assert time_ns > 0 and time_ns / runs > 0
    assert STATS.read_text().strip() == "0"  # the sysctl was left alone (it shows only its own setting)
    before = prog_info_by_id(hooks["ingress"]).run_time_ns
    connect(lab, requests=50)
    assert prog_info_by_id(hooks["ingress"]).run_time_ns == before  # nothing counts with the statistics off


def test_stats_go_off_when_the_command_is_stopped(lab: Lab) -> None:
    client = lab.pod("client")
    entry = next(a.prog_id for a in lab.attached_programs(client.node) if a.device == client.ifname)
    ping = ["ping", "-q", "-i", "0.02", "-w", "30", lab.pod("server").ipv4]
    pinger = subprocess.Popen(netns.exec_argv(client.netns, ping), stdout=subprocess.DEVNULL)
    command = start_flowscope("bpf", "--lab", lab.name, "--stats", "30s")
    try:
        start = prog_info_by_id(entry).run_cnt
        wait_for(lambda: prog_info_by_id(entry).run_cnt > start + 5, timeout=15)  # counting: statistics are on
        command.send_signal(signal.SIGINT)
        assert command.wait(timeout=10) == 130
        wait_for(lambda: not counting(lab, entry), timeout=5)  # long before the 30 s window would end
    finally:
        for process in (command, pinger):
            process.kill()
            process.wait(timeout=5)


def counting(lab: Lab, program_id: int) -> bool:
    """Whether the kernel counts the program's runs: does a real round trip through it change its count?"""
    before = prog_info_by_id(program_id).run_cnt
    lab.exec("client", ["ping", "-q", "-c", "2", "-i", "0.05", lab.pod("server").ipv4])
    return prog_info_by_id(program_id).run_cnt != before


def test_a_window_too_long_is_invalid_argument(lab: Lab) -> None:
    request = control_pb2.GetDatapathRequest()
    request.stats_window.FromSeconds(61)
    with pytest.raises(grpc.RpcError) as failed:
        control(lab).GetDatapath(request, timeout=10)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details() == "stats_window is 0 to 60s, not 61s"
    assert STATS.read_text().strip() == "0"


def test_the_text_shows_the_tree_and_the_maps(lab: Lab) -> None:
    done = run_flowscope("bpf", "--lab", lab.name)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for line in (
        "node1",
        "node2",
        f"tail-call map calls ({len(tail_call_slots())} of 16 slots",
        "tail calls: calls (map ",
    ):
        assert line in text
    assert f"{lab.pod('client').ifname} (ifindex " in text
    assert "slot 0  stage_ipv4 #" in text
    assert "MAP" in text and "PINNED" in text and "/conntrack/ct4" in text


def test_no_agent_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = run_flowscope("bpf", "--server", f"unix://{tmp_path}/none.sock")
    assert done.returncode == 1
    expected = f"flowscope: error: cannot connect to unix://{tmp_path}/none.sock (no such socket)"
    assert done.stderr.strip().splitlines() == [expected]


def test_a_bad_window_is_a_usage_error() -> None:
    done = run_flowscope("bpf", "--stats", "0s")
    assert done.returncode == 2
    assert "argument --stats: '0s': a window above 0 and at most 60s" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
