"""Packet-path sessions through the relay on a real two-node lab: agents with mutual-TLS control listeners, a
relay (in the lab's `world` host, which reaches the nodes' addresses) with mutual TLS, a unix socket and
--peer-control-port, and real datagrams between the nodes' pods."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certificates import authority, signed
from relay_lab import AGENT, datagram, lab_name

from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.lab import Lab, netns
from flowscope.lab.agent import default_command
from flowscope.observer.datapath.pathtrace import SESSIONS_MAX

pytestmark = pytest.mark.bpf

CONTROL_PORT = 4246
RELAY_PORT = 4245


class Setup:
    def __init__(self, lab: Lab, pki: Path) -> None:
        self.lab = lab
        self.pki = pki
        self.socket = pki / "relay.sock"
        self.relay = f"{lab.world.ipv4}:{RELAY_PORT}"

    def agent_socket(self, node: str) -> str:
        return f"unix://{self.lab.agent_socket(node)}"


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    import shutil
    import tempfile

    pki = Path(tempfile.mkdtemp(prefix="fs-rt-"))  # short: the relay's socket lives here
    ca = authority(pki)
    with Lab(lab_name("rtrace"), nodes=2, agent_command=AGENT) as lab:
        lab.up(traffic=False, agent=False, relay=False)
        ips = [node.ipv4 for node in lab.nodes]
        agent = signed(pki, ca, "agent", [node.name for node in lab.nodes], ips)
        signed(pki, ca, "relay", ["relay"], [lab.world.ipv4])
        signed(pki, ca, "client", ["client"])
        lab.start_agents(
            extra_args=[
                "--tls-cert-file", str(agent.cert), "--tls-key-file", str(agent.key),
                "--tls-client-ca-files", str(ca.cert), "--control-listen-address", f":{CONTROL_PORT}",
            ]
        )  # fmt: skip
        peers = ",".join(f"{node.name}={node.ipv4}:4244" for node in lab.nodes)
        relay = [
            *default_command(), "relay", "--listen-address", f":{RELAY_PORT}", "--peers", peers,
            "--socket", str(pki / "relay.sock"), "--peer-control-port", str(CONTROL_PORT),
            "--tls-server-cert-file", str(pki / "relay.pem"), "--tls-server-key-file", str(pki / "relay.key"),
            "--tls-client-ca-files", str(ca.cert), "--tls-hubble-server-ca-files", str(ca.cert),
            "--tls-client-cert-file", str(pki / "relay.pem"), "--tls-client-key-file", str(pki / "relay.key"),
        ]  # fmt: skip
        lab.start("world", relay, "relay-trace", ports=[("tcp", RELAY_PORT)])
        yield Setup(lab, pki)
    shutil.rmtree(pki, ignore_errors=True)


def request(pcap_filter: str, count: int = 1, seconds: int = 30) -> trace_pb2.TraceRequest:
    r = trace_pb2.TraceRequest(pcap_filter=pcap_filter, count=count)
    r.duration.FromSeconds(seconds)
    return r


def tracer(target: str) -> tuple[grpc.Channel, trace_pb2_grpc.TracerStub]:
    channel = grpc.insecure_channel(target)
    return channel, trace_pb2_grpc.TracerStub(channel)


def started_on_every_node(call: Iterator[trace_pb2.TraceEvent], nodes: set[str]) -> list[trace_pb2.TraceEvent]:
    events: list[trace_pb2.TraceEvent] = []
    while {e.node_name for e in events if e.WhichOneof("event") == "started"} != nodes:
        events.append(next(call))
    return events


def test_flowscope_trace_through_the_relay_gets_both_nodes_paths_in_one_stream(setup: Setup) -> None:
    lab, pki = setup.lab, setup.pki
    argv = [
        *default_command(), "trace", "--server", setup.relay, "--tls", "--tls-ca-cert-files", str(pki / "ca.pem"),
        "--tls-client-cert-file", str(pki / "client.pem"), "--tls-client-key-file", str(pki / "client.key"),
        "--pcap-filter", "udp port 41201", "--count", "1", "--duration", "30s", "-o", "jsonpb",
    ]  # fmt: skip
    trace = subprocess.Popen(
        netns.exec_argv(lab.netns("world"), argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert trace.stdout is not None
        events = []
        while {e["node_name"] for e in events if "started" in e} != {"node1", "node2"}:
            line = trace.stdout.readline()
            assert line, trace.stderr.read() if trace.stderr else ""
            events.append(json.loads(line))
        datagram(lab, "client", "server", 41201)
        out, err = trace.communicate(timeout=40)
    finally:
        trace.kill()
        trace.wait()
    assert trace.returncode == 0, err
    events += [json.loads(line) for line in out.splitlines()]
    hops = [e for e in events if "hop" in e]
    client_node, server_node = lab.pod("client").node, lab.pod("server").node
    assert {e["node_name"] for e in hops} == {client_node, server_node}
    # Each node picked the request (from the client's port 41201), the first packet it saw: the same wire
    # packet, whose digest links its path on one node to its continuation on the other.
    first = {node: next(e["hop"] for e in hops if e["node_name"] == node) for node in (client_node, server_node)}
    assert {node: hop["l4"]["UDP"]["source_port"] for node, hop in first.items()} == {
        client_node: 41201,
        server_node: 41201,
    }, first
    assert first[client_node]["digest"] == first[server_node]["digest"]
    ended = {e["node_name"]: e["ended"] for e in events if "ended" in e}
    assert ended.keys() == {"node1", "node2"}
    assert all(end["reason"] == "COUNT" and end["packets"] == 1 for end in ended.values()), ended


def test_the_relays_mutual_tls_port_is_its_write_side_and_a_bad_filter_is_invalid_argument(setup: Setup) -> None:
    """Every node refuses the filter the same way, so the relay answers as one agent would."""
    bad = request("ether host 01:02:03:04:05:06")
    channel, agent = tracer(setup.agent_socket("node1"))
    with channel, pytest.raises(grpc.RpcError) as direct:
        next(agent.Trace(bad, timeout=10))
    channel, relay = tracer(f"unix://{setup.socket}")
    with channel, pytest.raises(grpc.RpcError) as through:
        next(relay.Trace(bad, timeout=10))
    assert direct.value.code() == through.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert through.value.details() == direct.value.details()


def test_a_client_that_goes_away_ends_the_session_on_every_agent(setup: Setup) -> None:
    nodes = {node.name for node in setup.lab.nodes}
    channel, relay = tracer(f"unix://{setup.socket}")
    with channel:
        call = relay.Trace(request("udp port 41299", count=5, seconds=120))
        started_on_every_node(call, nodes)
        call.cancel()
        cancelled = time.monotonic()
        # Every slot free again on every agent: the relay's calls to them went with the client's.
        for node in sorted(nodes):
            while not all_slots_free(setup.agent_socket(node)):
                assert time.monotonic() - cancelled < 2.0, f"{node} still runs the cancelled session"
    assert time.monotonic() - cancelled < 2.0


def all_slots_free(target: str) -> bool:
    """Whether SESSIONS_MAX sessions can start on the agent at once (all ended again before returning)."""
    channel, agent = tracer(target)
    calls = []
    try:
        for _ in range(SESSIONS_MAX):
            call = agent.Trace(request("udp port 41298", seconds=60), timeout=10)
            calls.append(call)
            try:
                assert next(call).WhichOneof("event") == "started"
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                return False
        return True
    finally:
        for call in calls:
            call.cancel()
        channel.close()


def take_every_slot(agent: trace_pb2_grpc.TracerStub) -> list[Iterator[trace_pb2.TraceEvent]]:
    """SESSIONS_MAX sessions started on the agent. The sessions a test before cancelled end on the agent a
    moment after the client's cancel returns (their probes are detached then), so a slot still taken is waited for."""
    deadline = time.monotonic() + 10.0
    while True:
        taken = [agent.Trace(request("udp port 41297", seconds=60), timeout=30) for _ in range(SESSIONS_MAX)]
        try:
            for call in taken:
                assert next(call).WhichOneof("event") == "started"
            return taken
        except grpc.RpcError as exc:
            for call in taken:
                call.cancel()  # type: ignore[attr-defined]
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline, exc


def test_a_node_that_cannot_start_a_session_is_named_and_the_others_go_on(setup: Setup) -> None:
    """node2's slots all taken: the relay names node2 and streams node1's session."""
    channel, agent = tracer(setup.agent_socket("node2"))
    taken = take_every_slot(agent)
    try:
        relay_channel, relay = tracer(f"unix://{setup.socket}")
        with relay_channel:
            call = relay.Trace(request("udp port 41296", seconds=2), timeout=30)
            events = list(call)
        status = [e.node_status for e in events if e.WhichOneof("event") == "node_status"]
        assert [(list(s.node_names), s.message.split(":")[1].strip()) for s in status] == [
            (["node2"], "RESOURCE_EXHAUSTED")
        ]
        kinds = [(e.node_name, e.WhichOneof("event")) for e in events if e.WhichOneof("event") != "node_status"]
        assert kinds == [("node1", "started"), ("node1", "ended")]
    finally:
        for call in taken:
            call.cancel()
        channel.close()
