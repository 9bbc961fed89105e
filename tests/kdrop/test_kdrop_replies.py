"""A kernel drop says which way it went in its connection (observer/datapath/reply_marks.py).

A reply that comes after its client gave up (a DNS answer after dig's timeout) is a NO_SOCKET drop in the client.
Its flow must be a reply (is_reply true, and through a service the service named as its source), so that top and
map count it in its connection's row instead of drawing `(world) → default/client UDP/<ephemeral port>`. A drop
of a request (to a closed port) is not a reply.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from integration.flows_helpers import wait_for_flows
from kdrop_helpers import kernel_drops, send_from_pod

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.state import LabState

pytestmark = pytest.mark.bpf

# The server: one datagram in, then an answer once the test writes a line (by then the client's socket is gone).
LATE_SERVER = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    _, client = s.recvfrom(100)
    print(client[1], flush=True)
    sys.stdin.readline()
    s.sendto(b"late answer", client)
"""

# The client: one datagram from `sport` to each address given, and the socket closed before any answer can come.
ASK_AND_LEAVE = """
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    s.sendto(bytes.fromhex(sys.argv[4]), (host, port))
"""

# A DNS question for web.web.svc.lab. A, id 0x4242.
DNS_QUERY = "424201000001000000000000" + "03776562037765620373766303" + "6c616200" + "00010001"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-kdreply") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def one_drop(lab: Lab, dport: int) -> flow_pb2.Flow:
    flows = wait_for_flows(lab, [kernel_drops(dport)], lambda f: len(f) >= 1)
    assert len(flows) == 1, flows
    return flows[0]


@pytest.mark.parametrize("family", [4, 6])
def test_a_late_reply_between_pods_is_a_reply(lab: Lab, family: int) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    src, dst = (client.ipv4, server.ipv4) if family == 4 else (client.ipv6, server.ipv6)
    sport, dport = 43100 + family, 7800 + family
    argv = ["ip", "netns", "exec", server.netns, sys.executable, "-c", LATE_SERVER, dst, str(dport)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as answering:
        try:
            assert answering.stdout is not None and answering.stdin is not None
            assert answering.stdout.readline().strip() == "ready"
            lab.exec("client", [sys.executable, "-c", ASK_AND_LEAVE, dst, str(dport), str(sport), "71"])
            assert int(answering.stdout.readline()) == sport
            answering.stdin.write("\n")
            answering.stdin.flush()
            assert answering.wait(timeout=10) == 0
        finally:
            answering.kill()

    flow = one_drop(lab, sport)
    assert flow.flowscope.kernel_drop_reason == "NO_SOCKET"
    assert (flow.IP.source, flow.IP.destination) == (dst, src)
    assert (flow.l4.UDP.source_port, flow.l4.UDP.destination_port) == (dport, sport)
    assert (flow.source.pod_name, flow.destination.pod_name) == ("server", "client")
    assert flow.HasField("is_reply") and flow.is_reply.value and flow.reply


def test_a_late_answer_through_a_service_is_a_reply_from_the_service(lab: Lab) -> None:
    """The drop in the client has the ClusterIP as its source; conntrack knows the connection by the backend."""
    cluster_ip = next(ip for ip in lab.topology.service("kube-system/kube-dns").cluster_ips if ":" not in ip)
    dns = next(d for d in (LabState.load(lab.state_file) or pytest.fail("no lab state")).daemons if d.role == "dns")
    sport = 43110
    os.kill(dns.pid, signal.SIGSTOP)  # the server answers once the client is gone
    try:
        lab.exec("client", [sys.executable, "-c", ASK_AND_LEAVE, cluster_ip, "53", str(sport), DNS_QUERY])
    finally:
        os.kill(dns.pid, signal.SIGCONT)

    flow = one_drop(lab, sport)
    assert flow.flowscope.kernel_drop_reason == "NO_SOCKET"
    assert (flow.IP.source, flow.IP.destination) == (cluster_ip, lab.pod("client").ipv4)
    assert (flow.l4.UDP.source_port, flow.l4.UDP.destination_port) == (53, sport)
    assert flow.HasField("is_reply") and flow.is_reply.value
    assert (flow.source_service.namespace, flow.source_service.name) == ("kube-system", "kube-dns")
    assert not flow.HasField("destination_service")


def test_a_request_to_a_closed_port_is_no_reply(lab: Lab) -> None:
    server = lab.pod("server")
    send_from_pod(lab, "client", server.ipv4, 7810, 43120)
    flow = one_drop(lab, 7810)
    assert flow.HasField("is_reply") and not flow.is_reply.value
    assert flow.traffic_direction == flow_pb2.INGRESS
