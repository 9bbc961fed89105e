"""`flowscope bpf` against the agent as deploy/kubernetes/agent.yaml runs it: root with only the manifest's
capabilities, without CAP_SYS_ADMIN, which switching kernel BPF statistics on (BPF_ENABLE_STATS) needs.

Such an agent refuses a stats window with FAILED_PRECONDITION and the reason (it used to fail the call with
UNKNOWN and the kernel's errno), the CLI prints that reason as one line and exits 1, and everything else
`flowscope bpf` shows works as before: hooks, programs, slots and maps need only what the agent has. Another's
program on a hook, which such an agent may not open, is shown by its id as that (it used to read "(gone)")."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cli.cli_runner import run_flowscope  # tests/ is on the path (its conftest)
from deploy_manifests import container

from flowscope.api.control import control_pb2, control_pb2_grpc
from flowscope.lab import Lab, netns
from flowscope.observer.datapath.bpfsys import BPF_TCX_INGRESS, prog_load, tcx_link_create

pytestmark = pytest.mark.bpf

SCHED_CLS = 3
PASS_ON = struct.pack("<BBhi", 0xB7, 0, 0, -1) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = TC_ACT_UNSPEC; exit
FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
REASON = (
    "cannot count program runs over stats_window: switching kernel BPF statistics on (BPF_ENABLE_STATS) needs "
    "CAP_SYS_ADMIN, and the agent runs without it"
)


def as_deployed() -> list[str]:
    """`flowscope` as root with the manifest's capabilities only, as a container runtime starts the agent."""
    capabilities = container("flowscope-agent", "agent").spec["securityContext"]["capabilities"]
    assert capabilities["drop"] == ["ALL"] and "SYS_ADMIN" not in capabilities["add"]
    wanted = ",".join(["-all", *(f"+{name.lower()}" for name in capabilities["add"])])
    return ["setpriv", "--bounding-set", wanted, "--inh-caps", "-all", "--no-new-privs", "--", FLOWSCOPE]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-bpfcaps", nodes=1, agent_command=as_deployed()) as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def get_datapath(lab: Lab, window_s: int) -> control_pb2.DatapathInventory:
    request = control_pb2.GetDatapathRequest()
    request.stats_window.FromSeconds(window_s)
    with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
        return control_pb2_grpc.ControlStub(channel).GetDatapath(request, timeout=30)


def test_a_stats_window_is_failed_precondition_with_the_reason(lab: Lab) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        get_datapath(lab, 1)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed.value.details() == REASON


def test_the_cli_prints_the_reason_in_one_line_and_exits_1(lab: Lab) -> None:
    for output in ("text", "json"):
        done = run_flowscope("bpf", "--lab", lab.name, "--stats", "1s", "-o", output, timeout=60)
        assert done.returncode == 1, done.stdout
        assert done.stdout == ""
        assert done.stderr.strip().splitlines() == [f"flowscope: error: node1: {REASON}"]


def test_without_a_window_the_inventory_needs_no_more_than_the_agent_has(lab: Lab) -> None:
    inventory = get_datapath(lab, 0)
    assert not inventory.HasField("stats_window")
    names = {program.name for program in inventory.programs}
    assert {"from_container", "to_container", "from_netdev", "to_netdev"} <= names
    assert all(program.held for program in inventory.programs)
    done = run_flowscope("bpf", "--lab", lab.name, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tail-call map calls (" in done.stdout and "PINNED" in done.stdout


def test_anothers_program_on_a_hook_is_shown_by_its_id_as_unreadable(lab: Lab) -> None:
    program = prog_load(SCHED_CLS, PASS_ON, "GPL", "not_flowscope")
    try:
        with netns.inside(lab.topology.node("node1").netns):
            link = tcx_link_create(program, socket.if_nametoindex("eth0"), BPF_TCX_INGRESS)
        try:
            inventory = get_datapath(lab, 0)
            on_eth0 = next(h for h in inventory.hooks if (h.device, h.direction) == ("eth0", "ingress"))
            theirs = [p for p in inventory.programs if p.id == on_eth0.program_ids[-1]]
            assert [(p.name, p.type, p.held) for p in theirs] == [("", "", False)]
            done = run_flowscope("bpf", "--lab", lab.name, timeout=60)
            assert done.returncode == 0, done.stderr
            line = f"#{theirs[0].id} (not the agent's, which may not read it without CAP_SYS_ADMIN)"
            assert line in done.stdout and "(gone)" not in done.stdout
        finally:
            os.close(link)
    finally:
        os.close(program)
