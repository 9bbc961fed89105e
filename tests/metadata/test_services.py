"""Services in the cluster file: the round trip, their frontends and backends, what is wrong with them (the
exact words the agent logs), and the service ids the datapath and the agent events share."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from flowscope.observer import services_check
from flowscope.observer.datapath.c_source import BPF_DIR, header_define
from flowscope.observer.metadata import Cluster, Endpoint, Node, Service, ServicePort
from flowscope.observer.service_ids import ID_MAX, service_ids

NODES = (Node("node1", ipv4="10.77.0.1", ipv6="fd77::1"), Node("node2", ipv4="10.77.0.2"))
WEB_1 = Endpoint(1001, "node1", "web", "web-1", {"app": "web", "tier": "a"}, "lxc1001", ipv4="10.200.1.11")
WEB_2 = Endpoint(2001, "node2", "web", "web-2", {"app": "web"}, "lxc2001", ipv4="10.200.2.11", ipv6="fd00::2:11")
OTHER = Endpoint(2002, "node2", "default", "web-elsewhere", {"app": "web"}, "lxc2002", ipv4="10.200.2.12")
HTTP = ServicePort(name="http", port=80, target_port=8080)
WEB = Service(
    name="web", namespace="web", cluster_ips=("10.96.0.10", "fd96::10"), ports=(HTTP,), selector={"app": "web"}
)


def cluster(*services: Service) -> Cluster:
    return Cluster("t", NODES, (WEB_1, WEB_2, OTHER), services)


def messages(c: Cluster) -> list[tuple[str, bool]]:
    return [(p.message, p.error) for p in c.service_problems()]


def test_services_round_trip_and_a_file_without_them_loads() -> None:
    nodeport = replace(WEB, name="np", type="NodePort", ports=(replace(HTTP, node_port=30080),))
    c = cluster(WEB, nodeport)
    assert Cluster.from_json(c.to_json()) == c
    raw = json.loads(c.to_json())
    assert raw["services"][0] == {
        "name": "web",
        "namespace": "web",
        "type": "ClusterIP",
        "cluster_ips": ["10.96.0.10", "fd96::10"],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 0}],
        "selector": {"app": "web"},
    }
    del raw["services"]
    assert Cluster.from_json(json.dumps(raw)).services == ()


def test_backends_are_the_selected_pods_of_the_frontends_family_at_the_target_port() -> None:
    c = cluster(WEB)
    assert [ep.pod for ep in c.selected(WEB)] == ["web-1", "web-2"]  # not default/web-elsewhere
    v4, v6 = c.frontends(WEB)
    assert (str(v4), str(v6)) == ("10.96.0.10:80/TCP", "[fd96::10]:80/TCP")
    assert [(b.endpoint.pod, b.address, b.port) for b in c.backends(v4)] == [
        ("web-1", "10.200.1.11", 8080),
        ("web-2", "10.200.2.11", 8080),
    ]
    assert [(b.endpoint.pod, b.address, b.port) for b in c.backends(v6)] == [("web-2", "fd00::2:11", 8080)]
    assert c.service_problems() == []


def test_a_nodeport_service_listens_on_every_nodes_addresses() -> None:
    nodeport = replace(WEB, type="NodePort", ports=(replace(HTTP, node_port=30080),))
    shown = [(str(f), f.nodeport, f.key) for f in cluster(nodeport).frontends(nodeport)]
    assert shown == [
        ("10.96.0.10:80/TCP", False, ("10.96.0.10", 80, 6)),
        ("[fd96::10]:80/TCP", False, ("fd96::10", 80, 6)),
        ("10.77.0.1:30080/TCP", True, ("10.77.0.1", 30080, 6)),
        ("[fd77::1]:30080/TCP", True, ("fd77::1", 30080, 6)),
        ("10.77.0.2:30080/TCP", True, ("10.77.0.2", 30080, 6)),
    ]


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            replace(WEB, cluster_ips=("10.200.2.11",)),
            "service web/web: cluster ip 10.200.2.11 is pod web/web-2's address",
        ),
        (replace(WEB, cluster_ips=("fd77:0::1",)), "service web/web: cluster ip fd77::1 is node node1's address"),
        (replace(WEB, cluster_ips=("10.96.0.300",)), "service web/web: cluster ip '10.96.0.300' is not an IP address"),
        (replace(WEB, cluster_ips=("10.96.0.1", "10.96.0.2")), "service web/web: has two cluster ips of one family"),
        (replace(WEB, type="LoadBalancer"), "service web/web: type 'LoadBalancer' is not one of ClusterIP, NodePort"),
        (replace(WEB, ports=()), "service web/web: has no ports"),
        (replace(WEB, ports=(replace(HTTP, port=0),)), "service web/web: port 0 is out of range (1-65535)"),
        (
            replace(WEB, ports=(replace(HTTP, target_port=65536),)),
            "service web/web: port 80: target port 65536 is out of range (1-65535)",
        ),
        (
            replace(WEB, ports=(replace(HTTP, protocol="ICMP"),)),
            "service web/web: port 80: protocol 'ICMP' is not one of TCP, UDP, SCTP",
        ),
        (
            replace(WEB, type="NodePort", ports=(replace(HTTP, node_port=8080),)),
            "service web/web: port 80: node port 8080 is out of range (30000-32767)",
        ),
        (
            replace(WEB, ports=(replace(HTTP, node_port=30080),)),
            "service web/web: port 80: a ClusterIP service has no node port (30080)",
        ),
    ],
)
def test_a_bad_service_is_an_error_and_left_out(service: Service, expected: str) -> None:
    c = cluster(service)
    assert messages(c) == [(expected, True)]
    assert c.valid_services() == ()


def test_a_selector_that_matches_nothing_is_a_warning_and_the_service_stays() -> None:
    lonely = replace(WEB, name="x", cluster_ips=("10.96.0.11",), selector={"app": "nothing"})
    c = cluster(WEB, lonely)
    assert messages(c) == [
        ("service web/x selects no pod: it exists with no backends and drops with SERVICE_BACKEND_NOT_FOUND", False)
    ]
    assert c.valid_services() == (WEB, lonely)


def test_duplicates_keep_the_first() -> None:
    again = replace(WEB, cluster_ips=("10.96.0.99",))
    same_frontend = replace(WEB, name="copy", cluster_ips=("10.96.0.10",))
    other_protocol = replace(same_frontend, name="udp", ports=(replace(HTTP, protocol="UDP"),))
    c = cluster(WEB, again, same_frontend, other_protocol)
    assert messages(c) == [
        ("service web/web: is defined more than once: the first one is in force", True),
        ("service web/copy: frontend 10.96.0.10:80/TCP is also service web/web's", True),
    ]
    assert c.valid_services() == (WEB, other_protocol)


def test_the_datapaths_limits_are_errors_that_name_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services_check, "BACKENDS_MAX", 1)
    monkeypatch.setattr(services_check, "FRONTENDS_MAX", 3)
    two_ports = replace(WEB, name="two", cluster_ips=("10.96.0.20",), ports=(HTTP, replace(HTTP, port=81)))
    assert messages(cluster(WEB)) == [
        ("service web/web: 2 backends behind 10.96.0.10:80/TCP, more than the datapath's 1 per frontend", True),
    ]
    monkeypatch.setattr(services_check, "BACKENDS_MAX", 64)
    c = cluster(WEB, two_ports)
    assert messages(c) == [
        (
            "service web/two: left out: its 2 frontends do not fit in the datapath's 3 "
            "(2 taken by the services before it)",
            True,
        ),
    ]
    assert c.valid_services() == (WEB,)


def test_the_limits_are_the_datapaths() -> None:
    if not (BPF_DIR / "include" / "flowscope" / "lb.h").exists():
        pytest.skip("bpf/include/flowscope/lb.h is not there yet")
    assert header_define("lb.h", "FS_LB_FRONTENDS_MAX") == services_check.FRONTENDS_MAX
    assert header_define("lb.h", "FS_LB_BACKENDS_MAX") == services_check.BACKENDS_MAX


def test_service_ids_are_stable_small_and_distinct() -> None:
    c = cluster(WEB)
    ids = service_ids(c)
    assert set(ids) == {("10.96.0.10", 80, 6), ("fd96::10", 80, 6)}
    assert all(1 <= n <= ID_MAX for n in ids.values()) and len(set(ids.values())) == 2
    assert service_ids(c) == ids  # from the frontends alone: every node and restart agrees

    # A frontend that arrives holding an existing id's number probes on; the existing one keeps its id.
    taken = {
        ("10.96.0.10", 80, 6): service_ids(cluster(replace(WEB, cluster_ips=("10.96.0.50",))))[("10.96.0.50", 80, 6)]
    }
    moved = service_ids(c, previous=taken)
    assert moved[("10.96.0.10", 80, 6)] == taken[("10.96.0.10", 80, 6)]
    assert (
        service_ids(cluster(WEB, replace(WEB, name="b", cluster_ips=("10.96.0.50",))), previous=moved)[
            ("10.96.0.50", 80, 6)
        ]
        == taken[("10.96.0.10", 80, 6)] % ID_MAX + 1
    )
