"""Names for addresses on a real lab: a pod resolves a name, then connects, and the agent's flows carry the name.

The client asks the lab's DNS server (coredns) for a name, then opens a TCP connection to the address it got:
the DNS answer reached the agent's L7 source, taught its name cache, and the connection's records were stored
with the name (`destination_names`, and `source_names` on the replies), so `--to-fqdn` finds them. An HTTPS
request names its server in the ClientHello (SNI): the flow shows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.flows_helpers import get_flows, wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.services import certificate_file, web_service_name

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], 9000), timeout=5) as s:
    s.sendall(b"hello\\n")
    s.recv(100)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-names") as lab:
        lab.up(traffic=False, agent=True, relay=True)
        yield lab


def observe(lab: Lab, *args: str, server: str = "") -> str:
    server = server or f"unix://{lab.agent_socket('node1')}"
    done = subprocess.run(
        [FLOWSCOPE, "observe", "--server", server, *args], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def resolve(lab: Lab, name: str) -> list[str]:
    dns = lab.pod("coredns").ipv4
    return lab.exec("client", ["dig", "+short", "+time=2", f"@{dns}", name, "A"]).stdout.split()


def test_a_later_tcp_flow_to_a_resolved_address_carries_the_name(lab: Lab) -> None:
    server = lab.pod("server")
    name = "server.default.svc.lab"  # a pod no service shadows resolves under svc.lab too
    assert resolve(lab, name + ".") == [server.ipv4]
    lab.exec("client", [sys.executable, "-c", CONNECT, server.ipv4])

    to_name = flow_pb2.FlowFilter(destination_fqdn=["*.svc.lab"], destination_port=["9000"])
    flows = wait_for_flows(lab, [to_name], lambda fl: any(f.l4.TCP.flags.SYN for f in fl), timeout=10)
    assert any(f.l4.TCP.flags.SYN for f in flows), "no flow of the connection carries the name"
    assert all(list(f.destination_names) == [name] for f in flows)
    assert all(f.IP.destination == server.ipv4 for f in flows)

    replies = get_flows(lab, [flow_pb2.FlowFilter(source_fqdn=[name], source_port=["9000"])])
    assert replies and all(list(f.source_names) == [name] for f in replies)

    cli = observe(lab, "--to-fqdn", "*.svc.lab", "--to-port", "9000", "-o", "jsonpb")
    assert cli.count(name) >= len(flows)
    through_relay = observe(
        lab, "--to-fqdn", "*.svc.lab", "--to-port", "9000", "-o", "jsonpb", server=lab.relay_address
    )
    assert through_relay.count(name) >= len(flows)


def test_a_service_name_follows_the_connection_past_its_translation(lab: Lab) -> None:
    web = lab.topology.service("web/web")
    name = f"{web.name}.{web.namespace}.svc.lab"
    (cluster_ip,) = resolve(lab, name + ".")
    lab.exec("client", ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", f"http://{cluster_ip}/status/404"])

    def both_ends(flows: list[flow_pb2.Flow]) -> bool:
        points = {f.trace_observation_point for f in flows if f.l4.TCP.flags.SYN}
        return {flow_pb2.FROM_ENDPOINT, flow_pb2.TO_ENDPOINT} <= points

    to_name = flow_pb2.FlowFilter(destination_fqdn=[name], destination_port=["80"])
    flows = wait_for_flows(lab, [to_name], both_ends, timeout=10)
    assert both_ends(flows), "the client's and the backend's side of the connection both carry the name"
    assert {f.destination_service.name for f in flows} == {"web"}
    assert any(f.IP.destination != cluster_ip for f in flows)  # the backend's address, named by what was asked
    assert all(name in f.destination_names for f in flows)


def test_an_address_nobody_resolved_has_no_names(lab: Lab) -> None:
    server = lab.pod("server")
    lab.exec("web", [sys.executable, "-c", CONNECT, server.ipv4])  # web never asked for the name
    from_web = flow_pb2.FlowFilter(source_pod=["web/web"], destination_port=["9000"])
    flows = wait_for_flows(lab, [from_web], lambda fl: any(f.l4.TCP.flags.SYN for f in fl), timeout=10)
    assert flows and all(not f.destination_names for f in flows)


def test_an_https_request_shows_its_server_name(lab: Lab) -> None:
    web_name = web_service_name(lab.topology)
    web_v4 = next(ip for ip in lab.topology.service("web/web").cluster_ips if ":" not in ip)
    curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", "--cacert", str(certificate_file(lab.topology))]
    lab.exec("client", [*curl, "--resolve", f"{web_name}:443:{web_v4}", f"https://{web_name}/"])

    def hellos(flows: list[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
        return [f for f in flows if "TLS ClientHello" in f.Summary]

    flows = wait_for_flows(
        lab, [flow_pb2.FlowFilter(destination_port=["443"])], lambda fl: bool(hellos(fl)), timeout=10
    )
    found = hellos(flows)
    assert found, "no flow shows the ClientHello"
    assert {f.trace_observation_point for f in found} == {flow_pb2.FROM_ENDPOINT, flow_pb2.TO_ENDPOINT}
    assert all(web_name in f.destination_names for f in found)
    # the client's own ClientHello record (its L7 capture) names the server in its Summary, though the name
    # lies past the bytes a flow record keeps
    sent = [f for f in found if f.trace_observation_point == flow_pb2.FROM_ENDPOINT]
    assert any(f.Summary.endswith(f"(TLS ClientHello SNI {web_name})") for f in sent), [f.Summary for f in sent]
    compact = observe(lab, "--all", "--to-fqdn", web_name, "--to-port", "443")  # the hello may be past the last 20
    assert "TLS ClientHello" in compact
