"""Packet-path sessions on a real two-node lab with the real agents: real packets from real sockets, followed
hop by hop through both nodes' tc hooks, tail-call stages and kernel tracepoints, to their fate.

What the issue's "done when" asks, each as a test: a TCP SYN from the client (node1) to the server (node2)
shows every hop on both nodes in order, the link between the nodes made by the digest, and its delivery; a UDP
datagram to a closed port ends dropped with NO_SOCKET; one nftables drops ends NETFILTER_DROP in nftables; a
policy-denied SYN ends at the policy stage with the rule. And around them: bad filters are refused with the
reason, the read-only port refuses sessions, a client that goes away ends its session on the agent (the
tracepoints go with it), and the CLI writes a pcapng that tshark reads hop by hop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sessions_live import hops, live_session
from tshark import frames
from waiting import wait_for

from flowscope.api.control import control_pb2, control_pb2_grpc
from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.cli.trace.fate import DELIVERED, DROPPED
from flowscope.cli.trace.paths import assemble
from flowscope.lab import Lab
from flowscope.lab.topology import AGENT_PORT, TCP_RR_PORT

pytestmark = pytest.mark.bpf

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT = 9999
NFT_PORT = 9002
NFT_TABLE = "fs_test_trace"

CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()"
CONNECT_DENIED = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
except OSError:
    pass
"""
SEND = (
    "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hi', (sys.argv[1], int(sys.argv[2])))"
)

DENY = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingressDeny:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
"""

# The SYN's path, hook by hook. The entry programs pass it on; conntrack sees a new connection at each hook;
# policy is asked at the endpoints only; the node's device has no endpoint, so its stage is skipped.
SYN_NODE1 = [
    "from-endpoint",
    "stage:ipv4",
    "stage:ct",
    "stage:policy",
    "stage:send_trace",
    "from-endpoint:pass",
    "to-network",
    "stage:ipv4",
    "stage:ct",
    "stage:send_trace",
    "to-network:pass",
    "net:net_dev_queue",
    "net:net_dev_xmit",
]
SYN_NODE2 = [
    "from-network",
    "stage:ipv4",
    "stage:ct",
    "stage:send_trace",
    "from-network:pass",
    "to-endpoint",
    "stage:ipv4",
    "stage:ct",
    "stage:policy",
    "stage:send_trace",
    "to-endpoint:pass",
    "net:net_dev_queue",
    "net:net_dev_xmit",
    "net:netif_receive_skb",
    "skb:consume_skb",
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-trace", nodes=2) as lab:
        lab.up(traffic=False)
        yield lab


def run(lab: Lab, pod: str, script: str, *args: object) -> None:
    lab.exec(pod, [sys.executable, "-c", script, *map(str, args)])


def syn_filter(lab: Lab) -> flow_pb2.FlowFilter:
    return flow_pb2.FlowFilter(
        source_pod=["default/client"],
        destination_port=[str(TCP_RR_PORT)],
        tcp_flags=[flow_pb2.TCPFlags(SYN=True)],
        ip_version=[flow_pb2.IPv4],
    )


def test_a_syn_is_followed_through_both_nodes_to_the_server_socket(lab: Lab) -> None:
    server = lab.pod("server")
    with live_session(lab, filters=[syn_filter(lab)], count=1) as session:
        run(lab, "client", CONNECT, server.ipv4, TCP_RR_PORT)
        events = session.events()

    node1, node2 = hops(events, "node1"), hops(events, "node2")
    # The lab has services, so stage_lb runs where a packet may meet one (its hops come and go with the service
    # features a hook has); every other hop is fixed.
    assert without_lb(node1) == SYN_NODE1, " ".join(h.hook for h in node1)
    assert without_lb(node2) == SYN_NODE2, " ".join(h.hook for h in node2)
    assert [h.hook for h in node1[:3]] == ["from-endpoint", "stage:ipv4", "stage:lb"]  # a ClusterIP? not this one
    for path in (node1, node2):
        assert len({h.packet_id for h in path}) == 1  # one packet on each node
        assert [h.index for h in path] == list(range(len(path)))
        assert all(h.IP.destination == server.ipv4 and h.l4.TCP.flags.SYN for h in path if h.hook != "net:net_dev_xmit")
    ct = [h for h in node1 + node2 if h.hook == "stage:ct"]
    assert [h.conntrack.state for h in ct] == [flow_pb2.NEW] * 4
    policy = [h for h in node2 if h.hook == "stage:policy"]
    assert policy[0].policy.verdict == flow_pb2.FORWARDED and not policy[0].policy.enforced
    assert node1[0].netns_name == "default/client" and node1[0].interface == lab.pod("client").ifname
    assert node2[-1].netns_name == "default/server" and node2[-1].function.startswith("tcp_")
    assert node1[-2].interface == node1[-1].interface == "eth0"  # net_dev_xmit takes its device from the queue hop

    session_view = assemble(events)
    assert len(session_view.paths) == 1
    path = session_view.paths[0]
    assert [p.node for p in path.packets] == ["node1", "node2"]
    linked = [h for h in path.hops() if h.link]
    assert [(h.node, h.link, h.clock_dependent) for h in linked] == [("node2", "digest", True)]
    assert node1[-3].digest == node2[0].digest != ""  # to-network:pass on node1, from-network on node2
    assert path.fate.kind == DELIVERED and path.fate.node == "node2" and path.fate.where == "default/server"
    ended = [e.ended for e in events if e.WhichOneof("event") == "ended"]
    assert [(e.reason, e.packets, e.hops_lost) for e in ended] == [(trace_pb2.SessionEnded.COUNT, 1, 0)] * 2


def without_lb(path: list[trace_pb2.Hop]) -> list[str]:
    return [h.hook for h in path if h.hook != "stage:lb"]


def test_a_datagram_to_a_closed_port_ends_dropped_with_no_socket(lab: Lab) -> None:
    server = lab.pod("server")
    with live_session(lab, pcap_filter=f"udp and dst port {CLOSED_PORT}", count=1) as session:
        run(lab, "client", SEND, server.ipv4, CLOSED_PORT)
        events = session.events()

    last = hops(events, "node2")[-1]
    assert last.hook == "skb:kfree_skb" and last.drop_reason_desc == "NO_SOCKET"
    assert last.netns_name == "default/server" and last.function.startswith("__udp4_lib_rcv")
    assert last.verdict == flow_pb2.DROPPED
    fate = assemble(events).paths[0].fate
    assert (fate.kind, fate.node, fate.reason, fate.by_kernel) == (DROPPED, "node2", "NO_SOCKET", True)


@pytest.fixture
def nft_drop(lab: Lab) -> Iterator[None]:
    """node2 drops UDP to NFT_PORT as it forwards it (an nftables forward chain)."""
    rules = (
        f"table inet {NFT_TABLE} {{\n"
        f"  chain drops {{\n    type filter hook forward priority 0\n    udp dport {NFT_PORT} drop\n  }}\n}}\n"
    )
    lab.exec("node2", ["nft", "-f", "-"], input=rules)
    yield
    lab.exec("node2", ["nft", "delete", "table", "inet", NFT_TABLE], check=False)


def test_a_datagram_nftables_drops_ends_netfilter_drop_in_nftables(lab: Lab, nft_drop: None) -> None:
    server = lab.pod("server")
    with live_session(lab, pcap_filter=f"udp dst port {NFT_PORT}", count=1) as session:
        run(lab, "client", SEND, server.ipv4, NFT_PORT)
        events = session.events()

    node2 = hops(events, "node2")
    assert [h.hook for h in node2[-2:]] == ["from-network:pass", "skb:kfree_skb"]  # forwarded: no to-endpoint
    last = node2[-1]
    assert last.drop_reason_desc == "NETFILTER_DROP" and last.netns_name == "node"
    assert last.function.startswith(("nft_do_chain", "nf_hook_slow"))
    fate = assemble(events).paths[0].fate
    assert (fate.kind, fate.node, fate.reason) == (DROPPED, "node2", "NETFILTER_DROP")


@pytest.fixture
def deny(lab: Lab) -> Iterator[None]:
    """A policy denying the client's connections to the server's port 9000, on every node."""
    stubs = [
        control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{lab.agent_socket(n.name)}")) for n in lab.nodes
    ]
    for stub in stubs:
        stub.ApplyPolicy(control_pb2.ApplyPolicyRequest(yaml=DENY, source="test"), timeout=10)
    yield
    for stub in stubs:
        stub.DeletePolicy(control_pb2.DeletePolicyRequest(), timeout=10)


def test_a_policy_denied_syn_ends_at_the_policy_stage_with_the_rule(lab: Lab, deny: None) -> None:
    server = lab.pod("server")
    with live_session(lab, filters=[syn_filter(lab)], count=1) as session:
        run(lab, "client", CONNECT_DENIED, server.ipv4, TCP_RR_PORT)
        events = session.events()

    node2 = hops(events, "node2")
    policy, drop = node2[-3], node2[-2]
    assert (policy.hook, policy.policy.verdict, policy.policy.rule) == (
        "stage:policy",
        flow_pb2.DROPPED,
        "server-in/ingressDeny/0",
    )
    assert (drop.hook, drop.drop_reason, drop.tc_action) == ("to-endpoint:drop", flow_pb2.POLICY_DENY, 2)
    assert node2[-1].hook == "skb:kfree_skb" and node2[-1].drop_reason_desc == "TC_EGRESS"  # tc's drop, freed
    fate = assemble(events).paths[0].fate
    assert (fate.kind, fate.node, fate.where, fate.reason, fate.rule) == (
        DROPPED,
        "node2",
        "stage:policy",
        "POLICY_DENY",
        "server-in/ingressDeny/0",
    )


@pytest.mark.parametrize(
    ("request_fields", "reason"),
    [
        ({"pcap_filter": "ether host 02:00:00:00:00:01"}, "pcap filter"),
        ({"filters": [flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED])]}, "verdict"),
    ],
)
def test_a_filter_the_datapath_cannot_run_is_refused_with_the_reason(
    lab: Lab, request_fields: dict[str, object], reason: str
) -> None:
    stub = trace_pb2_grpc.TracerStub(grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}"))
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Trace(trace_pb2.TraceRequest(**request_fields), timeout=10))  # type: ignore[arg-type]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in str(raised.value.details())


READ_ONLY_CALL = """
import grpc, sys
from flowscope.api.trace import trace_pb2, trace_pb2_grpc
stub = trace_pb2_grpc.TracerStub(grpc.insecure_channel(sys.argv[1]))
try:
    list(stub.Trace(trace_pb2.TraceRequest(), timeout=10))
except grpc.RpcError as exc:
    print(exc.code().name, exc.details())
"""


def test_the_read_only_port_refuses_sessions(lab: Lab) -> None:
    node1 = lab.node("node1")
    answer = lab.exec("world", [sys.executable, "-c", READ_ONLY_CALL, f"{node1.ipv4}:{AGENT_PORT}"]).stdout
    assert answer.startswith("PERMISSION_DENIED") and "unix socket" in answer


def attached_tracepoints() -> list[str]:
    """The tracepoints some process has a BPF program on, as bpftool lists them."""
    listing = subprocess.run(["bpftool", "perf", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1] for line in listing.splitlines() if "tracepoint" in line]


def test_a_session_whose_client_goes_away_ends_on_the_agent_and_its_tracepoints_go(lab: Lab) -> None:
    with live_session(lab, pcap_filter="udp port 1", count=5, duration={"seconds": 600}) as session:
        wait_for(lambda: "netif_receive_skb" in attached_tracepoints(), 5.0)
        session.cancel()
        wait_for(lambda: not {"netif_receive_skb", "consume_skb", "net_dev_xmit"} & set(attached_tracepoints()), 2.0)
    # every slot is free again: as many sessions as the datapath has slots start at once
    with live_session(lab, count=1, duration={"seconds": 5}) as first:
        assert first.started


def test_the_cli_writes_a_pcapng_with_an_interface_per_observation_point(lab: Lab, tmp_path: Path) -> None:
    server = lab.pod("server")
    capture = tmp_path / "syn.pcapng"
    argv = [
        str(ROOT / "flowscope"),
        "trace",
        "--lab",
        lab.name,
        "--from-pod",
        "default/client",
        "--to-port",
        str(TCP_RR_PORT),
        "--tcp-flags",
        "SYN",
        "-4",
        "--count",
        "1",
        "--write",
        str(capture),
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
        assert cli.stderr is not None
        started = [cli.stderr.readline(), cli.stderr.readline()]  # each node says when its session runs
        assert sorted(line.split(":")[0] for line in started) == ["node1", "node2"], started
        assert all("tracing" in line for line in started), started
        run(lab, "client", CONNECT, server.ipv4, TCP_RR_PORT)
        out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    assert "delivered to default/server on node2" in out

    rows = frames(capture, "frame.interface_name", "frame.packet_id", "frame.comment")
    assert len([r for r in rows if not r["frame.interface_name"].endswith("stage:lb")]) == len(SYN_NODE1) + len(
        SYN_NODE2
    )
    names = [row["frame.interface_name"] for row in rows]
    assert f"node1/default/client/{lab.pod('client').ifname}/from-endpoint" in names
    assert "node2/node/eth0/from-network" in names
    assert {row["frame.packet_id"] for row in rows} == {"1"}  # one path: both nodes' hops share its id
    syn_only = frames(capture, "frame.interface_name", display_filter="frame.packet_id == 1 && tcp.flags.syn == 1")
    xmits = sum(row["frame.interface_name"].endswith("net:net_dev_xmit") for row in rows)
    assert xmits == 2 and len(syn_only) == len(rows) - xmits  # all but net_dev_xmit, which carries no bytes
