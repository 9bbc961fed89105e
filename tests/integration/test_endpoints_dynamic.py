"""Endpoints that appear or leave while the agent runs are attached or detached without a restart.

A new pod is wired into the node by hand (as a CNI plugin would) and added to the cluster metadata; the agent
attaches to it and names its flows. Removing it from the metadata detaches the agent from it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator

import pytest
from flows_helpers import stub, wait_for_flows
from waiting import eventually

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab, netns, network
from flowscope.lab.topology import Pod
from flowscope.observer.metadata import Cluster

pytestmark = pytest.mark.bpf


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-dyn") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def attached(lab: Lab, ifname: str) -> bool:
    return any(a.device == ifname and a.name == "from_container" for a in lab.attached_programs("node1"))


def wire_extra_pod(lab: Lab) -> Pod:
    """A pod `batch/extra` on node1, wired as a CNI plugin would, not yet in the cluster metadata."""
    client = lab.pod("client")
    extra = dataclasses.replace(
        client,
        name="extra",
        namespace="batch",
        labels={"app": "extra"},
        endpoint_id=1099,
        netns=f"{client.netns.rsplit('-', 1)[0]}-extra",
        ifname="lxc1099",
        ipv4="10.200.1.99",
        ipv6="fd00:200:1::99",
    )
    netns.add([extra.netns])  # removed with the lab: its name has the lab's prefix
    netns.ip_batch(extra.node_netns, network.host_side(extra))
    netns.ip_batch(extra.netns, network.pod_side(extra))
    return extra


def test_a_new_pod_is_attached_and_named_then_detached(lab: Lab) -> None:
    extra = wire_extra_pod(lab)
    assert not attached(lab, extra.ifname)

    cluster = Cluster.load(lab.cluster_file)
    dataclasses.replace(cluster, endpoints=(*cluster.endpoints, extra.endpoint())).save(lab.cluster_file)
    assert eventually(lambda: attached(lab, extra.ifname))

    server = lab.pod("server")
    subprocess.run(netns.exec_argv(extra.netns, ["ping", "-c", "1", server.ipv4]), check=True, capture_output=True)
    whitelist = [flow_pb2.FlowFilter(source_pod=["batch/extra"])]
    flows = wait_for_flows(lab, whitelist, lambda fl: len(fl) >= 2)
    assert [(f.trace_observation_point, f.interface.name) for f in flows[:2]] == [
        (flow_pb2.FROM_ENDPOINT, extra.ifname),
        (flow_pb2.TO_ENDPOINT, server.ifname),
    ]
    assert flows[0].source.pod_name == "extra"
    assert flows[0].source.ID == extra.endpoint_id
    assert flows[0].source.labels == ["k8s:app=extra", "k8s:io.kubernetes.pod.namespace=batch"]
    assert flows[0].destination.pod_name == "server"

    cluster.save(lab.cluster_file)  # the pod leaves
    assert eventually(lambda: not attached(lab, extra.ifname))
    # Its earlier flows keep its name: the ring is decoded long after the packet.
    assert get_names(lab, whitelist) == {"extra"}


def test_a_follow_stream_selects_a_pod_added_after_it_started(lab: Lab) -> None:
    extra = wire_extra_pod(lab)
    request = observer_pb2.GetFlowsRequest(follow=True, whitelist=[flow_pb2.FlowFilter(source_pod=["batch/"])])
    stream = stub(lab).GetFlows(request, timeout=30)
    try:
        cluster = Cluster.load(lab.cluster_file)
        dataclasses.replace(cluster, endpoints=(*cluster.endpoints, extra.endpoint())).save(lab.cluster_file)
        assert eventually(lambda: attached(lab, extra.ifname))
        ping = netns.exec_argv(extra.netns, ["ping", "-c", "1", lab.pod("server").ipv4])
        subprocess.run(ping, check=True, capture_output=True)
        # The ping's flow, not the pod's own fe80:: neighbour solicitations, which the agent names by
        # identity alone (namespace and labels, no pod name) and which the namespace filter also selects.
        first = next(r.flow for r in stream if r.HasField("flow") and r.flow.l4.HasField("ICMPv4"))
        assert (first.source.namespace, first.source.pod_name) == ("batch", "extra")
    finally:
        stream.cancel()


def get_names(lab: Lab, whitelist: list[flow_pb2.FlowFilter]) -> set[str]:
    return {f.source.pod_name for f in wait_for_flows(lab, whitelist, lambda fl: bool(fl))}
