"""A pod's link-local traffic, read back from a real agent: named after the pod by the datapath's identity.

A pod's fe80:: address is in no registry (nobody puts link-local addresses in the cluster file, as Cilium keeps
them out of its ipcache), but the from-endpoint program knows whose packet it carries. The agent names such a
side from that identity, as Hubble does: the pod's labels and namespace, no pod name, so label and namespace
filters select it, on the gRPC API and from the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import get_flows, wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import GATEWAY_V6
from flowscope.observer.metadata import identity_of

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
ECHO_REQUEST = 128


def link_local_address(lab: Lab, pod: str) -> str:
    """The pod's fe80:: address on eth0, once the kernel has made it (its DAD over)."""
    shown = lab.exec(pod, ["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
    words = shown.split()
    return words[words.index("inet6") + 1].split("/")[0]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-linklocal") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


@pytest.fixture(scope="module")
def pinged(lab: Lab) -> tuple[str, list[flow_pb2.Flow]]:
    """The client's fe80:: address and the flows of its pings to its gateway's fe80::1, leaving the pod."""
    address = link_local_address(lab, "client")
    lab.exec("client", ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", f"{GATEWAY_V6}%eth0"])
    echo = flow_pb2.FlowFilter(
        source_ip=[address],
        event_type=[flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=5)],  # from-endpoint
    )

    def three_requests(flows: list[flow_pb2.Flow]) -> bool:
        return sum(f.l4.ICMPv6.type == ECHO_REQUEST for f in flows) >= 3

    flows = wait_for_flows(lab, [echo], three_requests, timeout=20)
    return address, [f for f in flows if f.l4.ICMPv6.type == ECHO_REQUEST]


def client_identity(lab: Lab) -> int:
    pod = lab.pod("client")
    return identity_of({**pod.labels, "io.kubernetes.pod.namespace": pod.namespace})


def test_the_pods_link_local_flows_carry_its_labels_and_namespace(
    lab: Lab, pinged: tuple[str, list[flow_pb2.Flow]]
) -> None:
    _, flows = pinged
    assert len(flows) >= 3
    for flow in flows:
        assert flow.source.identity == client_identity(lab)
        assert flow.source.namespace == "default"
        assert "k8s:app=client" in flow.source.labels
        assert "k8s:io.kubernetes.pod.namespace=default" in flow.source.labels
        assert "reserved:world" not in flow.source.labels
        assert flow.source.pod_name == ""  # the identity names no pod


def test_label_and_namespace_filters_select_them(lab: Lab, pinged: tuple[str, list[flow_pb2.Flow]]) -> None:
    address, flows = pinged
    until = max((f.time for f in flows), key=lambda t: (t.seconds, t.nanos))
    wanted = {f.uuid for f in flows}

    def selected(**fields: list[str]) -> set[str]:
        ff = flow_pb2.FlowFilter(source_ip=[address], **fields)  # type: ignore[arg-type]
        return {f.uuid for f in get_flows(lab, [ff], until=until) if f.l4.ICMPv6.type == ECHO_REQUEST}

    assert selected(source_label=["app=client"]) >= wanted
    assert selected(source_pod=["default/"]) >= wanted
    assert not selected(source_label=["reserved:world"])


def test_the_cli_from_label_selects_them(lab: Lab, pinged: tuple[str, list[flow_pb2.Flow]]) -> None:
    address, flows = pinged
    server = f"unix://{lab.agent_socket('node1')}"
    argv = [FLOWSCOPE, "observe", "--server", server, "--all", "--from-ip", address, "-o", "json"]
    done = subprocess.run([*argv, "--from-label", "app=client"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    shown = [json.loads(line)["flow"] for line in done.stdout.splitlines()]
    assert {flow.uuid for flow in flows} <= {flow["uuid"] for flow in shown}
    assert all("k8s:app=client" in flow["source"]["labels"] for flow in shown)
    world = subprocess.run([*argv, "--from-label", "reserved:world"], capture_output=True, text=True, timeout=30)
    assert world.returncode == 0, world.stderr
    assert not world.stdout.strip()
