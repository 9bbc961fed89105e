"""L7 without a proxy on a real two-node lab (issue 14, "Done when"): real dig and curl in the client pod, the
real agents at their default monitor aggregation (medium), flows read from the agent's gRPC API, the relay, and
`flowscope observe -t l7 -o jsonpb`.

Each message is reported on the client's node (node1), once: the query or request where it leaves the client,
the answer where it reaches it, so latency is measured there. Each test asks something no other test asks (its
own name, type, transport or path) and finds its flows by that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab
from flowscope.lab.services import web_service_name

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
L7 = flow_pb2.EventTypeFilter(type=129)
DIG = ["dig", "+time=2", "+tries=1"]
CURL = ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--max-time", "3"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-l7", nodes=2) as lab:
        lab.up(traffic=False, agent=False)
        # the agent's own default aggregation, not the lab's; two agents compiling at once on a busy machine
        lab.start_agents(extra_args=["--monitor-aggregation", "medium"], timeout=90)
        lab.start_relay()
        yield lab


def l7_flows(lab: Lab, node: str = "node1") -> list[flow_pb2.Flow]:
    """The node's L7 flows from or to the client pod, from its agent's Observer API."""
    client = lab.pod("client")
    sides = [
        flow_pb2.FlowFilter(event_type=[L7], source_pod=["default/client"]),
        flow_pb2.FlowFilter(event_type=[L7], destination_ip=[client.ipv4, client.ipv6]),
    ]
    with grpc.insecure_channel(f"unix://{lab.agent_socket(node)}") as channel:
        responses = observer_pb2_grpc.ObserverStub(channel).GetFlows(
            observer_pb2.GetFlowsRequest(whitelist=sides), timeout=20
        )
        return [response.flow for response in responses if response.HasField("flow")]


def exchange(lab: Lab, request_summary: str) -> tuple[flow_pb2.Flow, flow_pb2.Flow]:
    """The request flow whose Summary is `request_summary` and the response flow of the same client port."""
    found: list[tuple[flow_pb2.Flow, flow_pb2.Flow]] = []

    def paired() -> bool:
        flows = l7_flows(lab)
        requests = [f for f in flows if f.Summary == request_summary and f.l7.type == flow_pb2.REQUEST]
        for request in requests:
            port = client_port(request)
            responses = [f for f in flows if f.l7.type == flow_pb2.RESPONSE and client_port(f) == port]
            if responses:
                found.append((request, responses[0]))
                return True
        return False

    wait_for(paired, timeout=10)
    return found[0]


def client_port(flow: flow_pb2.Flow) -> int:
    l4 = flow.l4.TCP if flow.l4.HasField("TCP") else flow.l4.UDP
    return l4.source_port if flow.l7.type == flow_pb2.REQUEST else l4.destination_port


def assert_hubble_shaped(request: flow_pb2.Flow, response: flow_pb2.Flow, server_pod: str | None = None) -> None:
    """What every L7 pair shows, as Hubble's proxy flows do: type, event type, latency, endpoints, direction."""
    for flow in (request, response):
        assert flow.Type == flow_pb2.L7
        assert flow.event_type.type == 129
        assert flow.verdict == flow_pb2.FORWARDED
        assert flow.node_name.endswith("node1")
        assert flow.traffic_direction == flow_pb2.EGRESS
    assert (request.source.namespace, request.source.pod_name) == ("default", "client")
    assert (response.destination.namespace, response.destination.pod_name) == ("default", "client")
    if server_pod is not None:
        assert request.destination.pod_name == response.source.pod_name == server_pod
    assert request.l7.latency_ns == 0 and response.l7.latency_ns > 0
    assert response.is_reply.value and not request.is_reply.value


# --- DNS ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "qtype", "name"),
    [
        ("+notcp", "A", "web.web.svc.lab."),
        ("+tcp", "A", "server.default.pod.lab."),
        ("+notcp", "AAAA", "client.default.pod.lab."),
        ("+tcp", "AAAA", "web2.web.pod.lab."),
    ],
)
def test_dig_gives_a_dns_request_and_its_answer(lab: Lab, transport: str, qtype: str, name: str) -> None:
    dns = lab.pod("coredns")
    answer = lab.exec("client", [*DIG, transport, "+short", f"@{dns.ipv4}", name, qtype]).stdout.split()
    assert answer, f"the lab's DNS did not answer {name} {qtype}"
    request, response = exchange(lab, f"DNS Query {name} {qtype}")
    assert_hubble_shaped(request, response, server_pod=dns.name)
    protocol = "TCP" if transport == "+tcp" else "UDP"
    assert request.l4.HasField(protocol) and response.l4.HasField(protocol)
    assert request.l7.dns == flow_pb2.DNS(query=name, observation_source="proxy", qtypes=[qtype])
    dns_answer = response.l7.dns
    assert (dns_answer.query, list(dns_answer.ips), dns_answer.rcode) == (name, answer, 0)
    assert list(dns_answer.rrtypes) == [qtype] * len(answer) and dns_answer.ttl > 0
    ips = ",".join(answer)
    assert response.Summary == f'DNS Answer "{ips}" TTL: {dns_answer.ttl} (Proxy {name} {qtype})'


def test_nxdomain_is_a_response_with_its_rcode(lab: Lab) -> None:
    dns = lab.pod("coredns")
    name = "nosuch.default.svc.lab."
    done = lab.exec("client", [*DIG, f"@{dns.ipv4}", name, "A"])
    assert "NXDOMAIN" in done.stdout
    request, response = exchange(lab, f"DNS Query {name} A")
    assert_hubble_shaped(request, response, server_pod=dns.name)
    assert response.l7.dns.rcode == 3 and not response.l7.dns.ips
    assert response.Summary.startswith("DNS Answer RCode: Non-Existent Domain TTL: ")


# --- HTTP --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 404, 500])
def test_curl_gives_an_http_request_and_its_response(lab: Lab, code: int) -> None:
    web = lab.pod("web2")  # on node1 with the client; its twin `web` is on node2
    path = "/" if code == 200 else f"/status/{code}"
    assert lab.exec("client", [*CURL, f"http://{web.ipv4}{path}"], check=False).stdout == str(code)
    url = f"http://{web.ipv4}{path}"
    request, response = exchange(lab, f"HTTP/1.1 GET {url}")
    assert_hubble_shaped(request, response, server_pod=web.name)
    assert request.l7.http == flow_pb2.HTTP(method="GET", url=url, protocol="HTTP/1.1")
    assert response.l7.http == flow_pb2.HTTP(code=code, method="GET", url=url, protocol="HTTP/1.1")
    latency_ms = response.l7.latency_ns // 1_000_000
    assert response.Summary == f"HTTP/1.1 {code} {latency_ms}ms (GET {url})"


def test_url_queries_are_redacted_by_default(lab: Lab) -> None:
    web = lab.pod("web2")
    assert lab.exec("client", [*CURL, f"http://{web.ipv4}/status/200?secret=x"], check=False).stdout == "200"
    url = f"http://{web.ipv4}/status/200?HUBBLE_REDACTED"
    request, response = exchange(lab, f"HTTP/1.1 GET {url}")
    assert request.l7.http.url == response.l7.http.url == url
    assert "secret" not in str(request) + str(response)
    assert not request.l7.http.headers  # headers are dropped unless allow-listed


def test_a_request_to_a_remote_backend_through_the_service_is_paired(lab: Lab) -> None:
    """Through web/web's ClusterIP (answered by either web pod), with the Host header curl sends."""
    address = next(ip for ip in lab.topology.service("web/web").cluster_ips if ":" not in ip)
    host = web_service_name(lab.topology)
    done = lab.exec("client", [*CURL, "--resolve", f"{host}:80:{address}", f"http://{host}/status/404"], check=False)
    assert done.stdout == "404"
    _, response = exchange(lab, f"HTTP/1.1 GET http://{host}/status/404")
    assert response.l7.http.code == 404 and response.l7.latency_ns > 0


# --- through the relay and the CLI -------------------------------------------------------------------------


def test_observe_t_l7_through_the_relay_shows_them(lab: Lab) -> None:
    dns = lab.pod("coredns")
    name = "web.web.pod.lab."
    lab.exec("client", [*DIG, "+short", f"@{dns.ipv4}", name, "A"])
    exchange(lab, f"DNS Query {name} A")  # stored on node1
    argv = [FLOWSCOPE, "observe", "--server", lab.relay_address, "-t", "l7", "--last", "1000", "-o", "jsonpb"]
    lines = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    flows = [json.loads(line)["flow"] for line in lines if '"flow"' in line]
    mine = [f for f in flows if f.get("l7", {}).get("dns", {}).get("query") == name]
    kinds = {f["l7"]["type"] for f in mine}
    assert kinds == {"REQUEST", "RESPONSE"}, mine
    assert all(f["Type"] == "L7" and f["source"]["pod_name"] for f in mine)
    response = next(f for f in mine if f["l7"]["type"] == "RESPONSE")
    assert int(response["l7"]["latency_ns"]) > 0
    assert response["Summary"].startswith("DNS Answer ")


def test_status_says_what_became_of_the_l7_messages(lab: Lab) -> None:
    """`flowscope status` through the relay sums the nodes' L7 counts and store fill (run last: after traffic)."""
    dns = lab.pod("coredns")
    lab.exec("client", [*DIG, "+short", f"@{dns.ipv4}", "web.web.svc.lab.", "A"])
    exchange(lab, "DNS Query web.web.svc.lab. A")
    argv = [FLOWSCOPE, "status", "--server", lab.relay_address]
    compact = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    (line,) = [line for line in compact.splitlines() if line.startswith("L7 Messages: ")]
    assert "/32,766 stored" in line  # two nodes' default stores
    status = json.loads(subprocess.run([*argv, "-o", "json"], capture_output=True, text=True, check=True).stdout)
    l7 = status["flowscope_l7"]
    assert int(l7["messages"]) >= 2 and int(l7["stored"]) >= 2 and int(l7["memory_bytes"]) > 0
