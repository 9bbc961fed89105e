"""Services' translations beyond the packets themselves, on a real two-node lab with the real agents: a UDP client
connected to a ClusterIP whose backends have no socket on the port gets ECONNREFUSED, because the datapath
translates the backend's port unreachable back (the quote names the ClusterIP, the error comes from it), and the
flow of that error shows it coming from the ClusterIP; and each new translation is a debug event, served by
GetDebugEvents and shown by `flowscope observe debug-events`.

The test adds a UDP-only service over the lab's web pods (`web` on node2, `web2` on node1), which listen on TCP
only: whichever backend a datagram reaches answers port unreachable.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import get_flows, stub
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab
from flowscope.observer.metadata import Cluster, ServicePort

pytestmark = pytest.mark.bpf

UDP_IPS = {4: "10.96.0.251", 6: "fd96::251"}
UDP_PORT = 9999

# What the client's connected UDP socket hears back: the exception's name, or "answer".
UDP_ASK = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.settimeout(1)
    s.connect((sys.argv[1], int(sys.argv[2])))
    try:
        s.send(b"anyone?")
        s.recv(100)
        print("answer")
    except OSError as exc:
        print(type(exc).__name__)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-svci", nodes=2) as lab:
        lab.up(traffic=False)
        cluster = Cluster.load(lab.cluster_file)
        web = lab.topology.service("web/web")
        udp = dataclasses.replace(
            web,
            name="web-udp",
            cluster_ips=tuple(UDP_IPS.values()),
            ports=(ServicePort(name="probe", protocol="UDP", port=UDP_PORT, target_port=UDP_PORT),),
        )
        dataclasses.replace(cluster, services=(*cluster.services, udp)).save(lab.cluster_file)
        yield lab


def ask(lab: Lab, address: str) -> str:
    return lab.exec("client", [sys.executable, "-c", UDP_ASK, address, str(UDP_PORT)]).stdout.strip()


@pytest.mark.parametrize("version", [4, 6])
def test_a_udp_client_of_a_cluster_ip_without_listener_gets_connection_refused(lab: Lab, version: int) -> None:
    address = UDP_IPS[version]
    # until the agents have the service, the datagram goes nowhere and the client times out
    wait_for(lambda: ask(lab, address) == "ConnectionRefusedError", 20.0)
    assert [ask(lab, address) for _ in range(5)] == ["ConnectionRefusedError"] * 5

    client = lab.pod("client")
    errors = flow_pb2.FlowFilter(
        source_ip=[address],
        destination_ip=[client.ipv4 if version == 4 else client.ipv6],
        protocol=["icmpv4" if version == 4 else "icmpv6"],
    )
    wait_for(lambda: bool(get_flows(lab, [errors])), 15.0)
    flows = [f for f in get_flows(lab, [errors]) if f.trace_observation_point == flow_pb2.TO_ENDPOINT]
    assert flows, "the port unreachable reached the client from the ClusterIP"
    for flow in flows:
        assert flow.verdict == flow_pb2.FORWARDED
        icmp = flow.l4.ICMPv4 if version == 4 else flow.l4.ICMPv6
        assert (icmp.type, icmp.code) == ((3, 3) if version == 4 else (1, 4))
        assert flow.source_service == flow_pb2.Service(name="web-udp", namespace="web")


def debug_events(lab: Lab) -> list[flow_pb2.DebugEvent]:
    request = observer_pb2.GetDebugEventsRequest(number=4095)
    return [r.debug_event for r in stub(lab, "node1").GetDebugEvents(request, timeout=20)]


def test_a_connection_to_a_cluster_ip_is_one_debug_event_naming_frontend_and_backend(lab: Lab) -> None:
    address = next(ip for ip in lab.topology.service("web/web").cluster_ips if ":" not in ip)
    backends = {lab.pod(p).ipv4 for p in ("web", "web2")}
    before = len(debug_events(lab))
    page = lab.exec("client", ["curl", "-s", "-m", "3", f"http://{address}/"]).stdout
    assert "hello from " in page

    wait_for(lambda: len(debug_events(lab)) > before, 10.0)
    [event] = debug_events(lab)[before:]  # one connection, one translation, however many packets
    client = lab.pod("client").ipv4
    assert event.type == flow_pb2.DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS
    target = event.message.split("target=", 1)[1].split(",", 1)[0]
    assert target.rsplit(":", 1)[0] in backends
    assert f", frontend={address}:80/TCP (id {event.arg3.value}), client={client}:" in event.message
    assert event.arg3.value > 0 and event.arg2.value == int(target.rsplit(":", 1)[1])

    server = f"unix://{lab.agent_socket('node1')}"
    shown = subprocess.run(
        [
            str(Path(sys.executable).parent / "flowscope"),
            "observe",
            "debug-events",
            "--last",
            "4095",
            "--server",
            server,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert event.message in shown.stdout
