"""Services on a real two-node lab with the real agents: the datapath load-balances a ClusterIP over backends
on both nodes, keeps each connection on one backend, answers from the ClusterIP, names the service in flows,
and drops packets to a service without backends with SERVICE_BACKEND_NOT_FOUND.

The lab's `web/web` service (TCP :80) selects the pods `web` (node2) and `web2` (node1), each of whose HTTP
servers says which it is; `kube-system/kube-dns` (:53) selects coredns. The client pod is on node1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator

import pytest
from flows_helpers import get_flows, wait_for_flows
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.traffic import probes, run_round
from flowscope.observer.metadata import Cluster

pytestmark = pytest.mark.bpf

SYN = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=1)
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-svc", nodes=2) as lab:
        lab.up(traffic=False)
        yield lab


def cluster_ip(lab: Lab, key: str, version: int) -> str:
    return next(ip for ip in lab.topology.service(key).cluster_ips if (":" in ip) == (version == 6))


def request(lab: Lab, address: str) -> str:
    """One HTTP request to `address` (one connection: the lab's servers close after each answer); who answered."""
    url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
    page = lab.exec("client", ["curl", "-s", "-m", "3", url]).stdout
    return page.rsplit("hello from ", 1)[-1].split("<")[0]


@pytest.mark.parametrize("version", [4, 6])
def test_connections_to_a_cluster_ip_spread_over_both_backends_and_each_stays_on_one(lab: Lab, version: int) -> None:
    address = cluster_ip(lab, "web/web", version)
    client = lab.pod("client")
    source = client.ipv4 if version == 4 else client.ipv6
    backends = {lab.pod(p).ipv4 if version == 4 else lab.pod(p).ipv6 for p in ("web", "web2")}
    answered_by = {request(lab, address) for _ in range(30)}
    assert answered_by == {"web", "web2"}  # 30 connections, 2 backends: both (the odds otherwise: 2^-29)

    # Each connection (the client's source port) went to one backend, seen where node1 sends it on: to-network
    # (web, on node2) or to-endpoint (web2, on node1); and every reply reached the client from the ClusterIP.
    out = flow_pb2.FlowFilter(source_ip=[source], destination_port=["80"])
    flows = wait_for_flows(lab, [out], lambda fs: len(sent_to(fs)) >= 30)
    destinations = sent_to(flows)
    assert len(destinations) >= 30
    assert all(len(ips) == 1 and ips <= backends for ips in destinations.values()), destinations
    back = flow_pb2.FlowFilter(destination_ip=[source], source_port=["80"])
    replies = flows_at(get_flows(lab, [back]), flow_pb2.TO_ENDPOINT)
    assert replies and {f.IP.source for f in replies} == {address}


def sent_to(flows: list[flow_pb2.Flow]) -> dict[int, set[str]]:
    """Client source port -> the destinations its packets had past the translation."""
    past = [
        f
        for f in flows
        if f.event_type.type == 4 and f.trace_observation_point in (flow_pb2.TO_NETWORK, flow_pb2.TO_ENDPOINT)
    ]
    ports: dict[int, set[str]] = {}
    for flow in past:
        ports.setdefault(flow.l4.TCP.source_port, set()).add(flow.IP.destination)
    return ports


def test_dns_through_the_kube_dns_cluster_ip_answers_from_the_cluster_ip(lab: Lab) -> None:
    dns = cluster_ip(lab, "kube-system/kube-dns", 4)
    for transport in ("+notcp", "+tcp"):
        answer = lab.exec("client", ["dig", f"@{dns}", transport, "+short", "web.web.svc.lab.", "A"]).stdout
        assert answer.split() == [cluster_ip(lab, "web/web", 4)]  # dig checks the answer came from dns


def test_flows_name_the_service_and_show_the_translation_where_it_happens(lab: Lab) -> None:
    address = cluster_ip(lab, "web/web", 4)
    client = lab.pod("client")
    web = lab.topology.service("web/web")
    backends = {lab.pod(p).ipv4 for p in ("web", "web2")}
    request(lab, address)
    syn = flow_pb2.FlowFilter(source_ip=[client.ipv4], destination_port=["80"], tcp_flags=[flow_pb2.TCPFlags(SYN=True)])
    flows = wait_for_flows(lab, [syn], lambda fs: bool(flows_at(fs, flow_pb2.TO_NETWORK)))
    entered, left = flows_at(flows, flow_pb2.FROM_ENDPOINT)[-1], flows_at(flows, flow_pb2.TO_NETWORK)[-1]
    # at from-endpoint the packet as it entered: to the ClusterIP; past the translation, to a backend
    assert entered.IP.destination == address
    assert left.IP.destination in backends
    for flow in (entered, left):
        assert flow.destination_service == flow_pb2.Service(name=web.name, namespace=web.namespace)
        assert (flow.flowscope.original_destination.ip, flow.flowscope.original_destination.port) == (address, 80)
    replies = get_flows(lab, [flow_pb2.FlowFilter(destination_ip=[client.ipv4], source_port=["80"])])
    delivered = flows_at(replies, flow_pb2.TO_ENDPOINT)
    assert delivered and all(f.IP.source == address and f.source_service.name == web.name for f in delivered)


def flows_at(flows: list[flow_pb2.Flow], point: int) -> list[flow_pb2.Flow]:
    return [f for f in flows if f.trace_observation_point == point and f.event_type.type == 4]


def test_a_service_without_backends_drops_with_service_backend_not_found(lab: Lab) -> None:
    cluster = Cluster.load(lab.cluster_file)
    web = lab.topology.service("web/web")
    empty = dataclasses.replace(web, name="nobody", cluster_ips=("10.96.0.250",), selector={"app": "nobody"})
    dataclasses.replace(cluster, services=(*cluster.services, empty)).save(lab.cluster_file)
    try:
        drop = flow_pb2.FlowFilter(destination_ip=["10.96.0.250"], verdict=[flow_pb2.DROPPED])

        def dropped() -> bool:
            lab.exec("client", [sys.executable, "-c", SYN, "10.96.0.250"])  # until the agent has the service
            return bool(get_flows(lab, [drop]))

        wait_for(dropped, 15.0)
        flow = get_flows(lab, [drop])[-1]
        assert flow.drop_reason_desc == flow_pb2.SERVICE_BACKEND_NOT_FOUND
        assert flow.destination_service == flow_pb2.Service(name="nobody", namespace=web.namespace)
    finally:
        cluster.save(lab.cluster_file)


def test_every_traffic_probe_through_the_services_succeeds(lab: Lab) -> None:
    """The lab's traffic generator, as `lab up` runs it with agents: HTTP and DNS through the ClusterIPs."""
    assert run_round(probes(lab.topology, services=True)) == []
