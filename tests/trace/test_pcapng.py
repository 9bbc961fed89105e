"""A session written as pcapng (cli/trace/pcapng.py), read back with the real tshark: one interface per
observation point, a packet's hops sharing epb_packetid across nodes, direction and tc verdict decoded, the
summaries as frame comments, and `-Y 'frame.packet_id == N'` showing exactly one packet's path.

The hops are plain TraceEvent messages with real header bytes, as two agents would stream them for two packets
from node1's client to node2's server: a TCP SYN delivered, and a UDP datagram node2's policy drops."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from tshark import capture_application, capture_comments, frames

from flowscope.api.flow import flow_pb2
from flowscope.api.trace import trace_pb2
from flowscope.cli.trace.pcapng import PcapngWriter

CLIENT, SERVER = "10.0.1.5", "10.0.2.7"
START_S = 1_700_000_000
TCP_PATH, UDP_PATH = 1, 2  # the path ids a client gives the two packets once it linked node1 and node2 by digest


def _headers(protocol: str, payload: bytes = b"") -> bytes:
    ethernet = bytes.fromhex("0a0000000002") + bytes.fromhex("0a0000000001") + b"\x08\x00"
    if protocol == "TCP":
        l4 = struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, 0x50, 0x02, 64240, 0, 0)  # SYN
        number = 6
    else:
        l4 = struct.pack("!HHHH", 40001, 9999, 8 + len(payload), 0)
        number = 17
    total = 20 + len(l4) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 4242, 0, 64, number, 0, bytes(map(int, CLIENT.split("."))),
        bytes(map(int, SERVER.split("."))),
    )  # fmt: skip
    return ethernet + ip + l4 + payload


TCP_DATA = _headers("TCP")  # 54 bytes: the data's padding to 32 bits is exercised
UDP_DATA = _headers("UDP", b"abc")  # 45 bytes


def _hop(
    node: str, packet: str, index: int, kind: int, hook: str, netns: str, interface: str, **fields: object
) -> trace_pb2.TraceEvent:
    """A hop `index` microseconds into its packet's path on its node (node2 runs 1 ms after node1)."""
    event = trace_pb2.TraceEvent(node_name=node)
    hop = event.hop
    hop.packet_id, hop.index, hop.kind, hop.hook = packet, index, kind, hook
    hop.netns_name, hop.interface = netns, interface
    udp = packet.startswith("udp")
    hop.data = UDP_DATA if udp else TCP_DATA
    hop.length = len(hop.data)
    hop.time.seconds = START_S
    hop.time.nanos = (1_000_000 if node == "node2" else 0) + (500_000 if udp else 0) + index * 1000
    hop.IP.source, hop.IP.destination = CLIENT, SERVER
    if udp:
        hop.l4.UDP.source_port, hop.l4.UDP.destination_port = 40001, 9999
    else:
        hop.l4.TCP.source_port, hop.l4.TCP.destination_port = 40000, 80
    for name, value in fields.items():
        setattr(hop, name, value)
    return event


ENTRY, STAGE, PASS, DROP, KERNEL = (trace_pb2.TC_ENTRY, trace_pb2.TC_STAGE, trace_pb2.TC_PASS, trace_pb2.TC_DROP,
                                   trace_pb2.KERNEL)  # fmt: skip
CLIENT_NS, SERVER_NS = "default/client", "default/server"


def _tcp_hops() -> list[trace_pb2.TraceEvent]:
    n1 = [
        ("from-endpoint", ENTRY, CLIENT_NS, "lxc1001", {}),
        ("stage:ipv4", STAGE, CLIENT_NS, "lxc1001", {}),
        ("stage:ct", STAGE, CLIENT_NS, "lxc1001", {}),
        ("stage:policy", STAGE, CLIENT_NS, "lxc1001", {}),
        ("from-endpoint", PASS, CLIENT_NS, "lxc1001", {"tc_action": 0, "summary": "allowed out of default/client"}),
        ("net:net_dev_queue", KERNEL, "node1", "eth0", {}),
        ("to-network", ENTRY, "node1", "eth0", {}),
        ("to-network", PASS, "node1", "eth0", {"tc_action": 0}),
        ("net:net_dev_xmit", KERNEL, "node1", "eth0", {"xmit_rc": 0}),
    ]
    n2 = [
        ("net:netif_receive_skb", KERNEL, "node2", "eth0", {}),
        ("from-network", ENTRY, "node2", "eth0", {}),
        ("from-network", PASS, "node2", "eth0", {"tc_action": 0}),
        ("to-endpoint", ENTRY, SERVER_NS, "lxc2002", {}),
        ("to-endpoint", PASS, SERVER_NS, "lxc2002", {"tc_action": 0}),
        ("skb:consume_skb", KERNEL, SERVER_NS, "eth0", {"function": "tcp_v4_rcv"}),
    ]
    return [_hop("node1", "tcp-n1", i, k, h, ns, dev, **f) for i, (h, k, ns, dev, f) in enumerate(n1)] + [
        _hop("node2", "tcp-n2", i, k, h, ns, dev, **f) for i, (h, k, ns, dev, f) in enumerate(n2)
    ]


def _udp_hops() -> list[trace_pb2.TraceEvent]:
    n1 = [
        ("from-endpoint", ENTRY, CLIENT_NS, "lxc1001", {}),
        ("from-endpoint", PASS, CLIENT_NS, "lxc1001", {"tc_action": 0}),
        ("to-network", ENTRY, "node1", "eth0", {}),
        ("to-network", PASS, "node1", "eth0", {"tc_action": 0}),
        ("net:net_dev_xmit", KERNEL, "node1", "eth0", {"xmit_rc": 0}),
    ]
    n2 = [
        ("from-network", ENTRY, "node2", "eth0", {}),
        ("from-network", PASS, "node2", "eth0", {"tc_action": 0}),
        ("to-endpoint", ENTRY, SERVER_NS, "lxc2002", {}),
        ("to-endpoint", DROP, SERVER_NS, "lxc2002", {"tc_action": 2, "drop_reason": flow_pb2.POLICY_DENIED}),
        ("skb:kfree_skb", KERNEL, "node2", "lxc2002",
         {"drop_reason_desc": "TC_EGRESS", "function": "tcx_run"}),
    ]  # fmt: skip
    return [_hop("node1", "udp-n1", i, k, h, ns, dev, **f) for i, (h, k, ns, dev, f) in enumerate(n1)] + [
        _hop("node2", "udp-n2", i, k, h, ns, dev, **f) for i, (h, k, ns, dev, f) in enumerate(n2)
    ]


def _session() -> list[tuple[trace_pb2.TraceEvent, int]]:
    """Both packets' hops with their path ids, in the order of their times (as a client receives them)."""
    hops = [(e, TCP_PATH) for e in _tcp_hops()] + [(e, UDP_PATH) for e in _udp_hops()]
    return sorted(hops, key=lambda pair: pair[0].hop.time.ToNanoseconds())


def _started() -> trace_pb2.TraceEvent:
    event = trace_pb2.TraceEvent(node_name="node1")
    event.started.session_id, event.started.filter, event.started.count = 7, "host 10.0.2.7", 2
    event.started.duration.seconds = 30
    event.started.kernel_hooks = True
    return event


def _ended() -> trace_pb2.TraceEvent:
    event = trace_pb2.TraceEvent(node_name="node1")
    event.ended.session_id, event.ended.reason, event.ended.packets = 7, trace_pb2.SessionEnded.COUNT, 2
    return event


@pytest.fixture
def session_file(tmp_path: Path) -> Path:
    path = tmp_path / "session.pcapng"
    with PcapngWriter.create(path) as writer:
        writer.write(_started())
        for event, path_id in _session():
            writer.write(event, path_id=path_id)
        writer.write(_ended())
    return path


def test_one_interface_per_observation_point(session_file: Path) -> None:
    rows = frames(session_file, "frame.interface_id", "frame.interface_name", "frame.interface_description")
    interfaces = {
        row["frame.interface_id"]: (row["frame.interface_name"], row["frame.interface_description"]) for row in rows
    }
    assert sorted(interfaces.values()) == sorted([
        ("node1/default/client/lxc1001/from-endpoint", "flowscope tc hook from-endpoint"),
        ("node1/default/client/lxc1001/stage:ipv4", "flowscope tail-call stage ipv4"),
        ("node1/default/client/lxc1001/stage:ct", "flowscope tail-call stage ct"),
        ("node1/default/client/lxc1001/stage:policy", "flowscope tail-call stage policy"),
        ("node1/node1/eth0/net:net_dev_queue", "kernel tracepoint net:net_dev_queue"),
        ("node1/node1/eth0/to-network", "flowscope tc hook to-network"),
        ("node1/node1/eth0/net:net_dev_xmit", "kernel tracepoint net:net_dev_xmit"),
        ("node2/node2/eth0/net:netif_receive_skb", "kernel tracepoint net:netif_receive_skb"),
        ("node2/node2/eth0/from-network", "flowscope tc hook from-network"),
        ("node2/default/server/lxc2002/to-endpoint", "flowscope tc hook to-endpoint"),
        ("node2/default/server/eth0/skb:consume_skb", "kernel tracepoint skb:consume_skb"),
        ("node2/node2/lxc2002/skb:kfree_skb", "kernel tracepoint skb:kfree_skb"),
    ])  # fmt: skip
    assert sorted(interfaces, key=int) == [str(i) for i in range(12)]  # one IDB each, none for nothing


def test_every_hop_a_frame_with_its_path_id_time_and_bytes(session_file: Path) -> None:
    fields = ("frame.packet_id", "frame.interface_name", "frame.time_epoch", "frame.len", "frame.cap_len", "ip.src",
              "ip.dst", "ip.id", "tcp.dstport", "udp.dstport", "udp.payload")  # fmt: skip
    rows = frames(session_file, *fields)
    expected = []
    for event, path_id in _session():
        hop, udp = event.hop, event.hop.packet_id.startswith("udp")
        expected.append({
            "frame.packet_id": str(path_id),
            "frame.interface_name": f"{event.node_name}/{hop.netns_name}/{hop.interface}/{hop.hook}",
            "frame.time_epoch": f"{START_S}.{hop.time.nanos:09d}",
            "frame.len": "45" if udp else "54",
            "frame.cap_len": "45" if udp else "54",
            "ip.src": CLIENT,
            "ip.dst": SERVER,
            "ip.id": "0x1092",
            "tcp.dstport": "" if udp else "80",
            "udp.dstport": "9999" if udp else "",
            "udp.payload": "616263" if udp else "",
        })  # fmt: skip
    assert rows == expected
    assert len(rows) == 25


def test_one_filter_shows_one_packets_path_across_nodes(session_file: Path) -> None:
    tcp = frames(session_file, "frame.interface_name", "frame.comment", display_filter=f"frame.packet_id == {TCP_PATH}")
    assert [row["frame.interface_name"].split("/")[0] for row in tcp] == ["node1"] * 9 + ["node2"] * 6
    assert [row["frame.comment"] for row in tcp] == [
        "node1 from-endpoint 10.0.1.5:40000 -> 10.0.2.7:80",
        "node1 stage:ipv4 10.0.1.5:40000 -> 10.0.2.7:80",
        "node1 stage:ct 10.0.1.5:40000 -> 10.0.2.7:80",
        "node1 stage:policy 10.0.1.5:40000 -> 10.0.2.7:80",
        "allowed out of default/client",  # the agent's own summary, as it sent it
        "node1 net:net_dev_queue 10.0.1.5:40000 -> 10.0.2.7:80",
        "node1 to-network 10.0.1.5:40000 -> 10.0.2.7:80",
        "node1 to-network 10.0.1.5:40000 -> 10.0.2.7:80 passed",
        "node1 net:net_dev_xmit 10.0.1.5:40000 -> 10.0.2.7:80 rc 0",
        "node2 net:netif_receive_skb 10.0.1.5:40000 -> 10.0.2.7:80",
        "node2 from-network 10.0.1.5:40000 -> 10.0.2.7:80",
        "node2 from-network 10.0.1.5:40000 -> 10.0.2.7:80 passed",
        "node2 to-endpoint 10.0.1.5:40000 -> 10.0.2.7:80",
        "node2 to-endpoint 10.0.1.5:40000 -> 10.0.2.7:80 passed",
        "node2 skb:consume_skb 10.0.1.5:40000 -> 10.0.2.7:80 consumed by tcp_v4_rcv",
    ]
    udp = frames(session_file, "frame.comment", "udp.srcport", display_filter=f"frame.packet_id == {UDP_PATH}")
    assert len(udp) == 10
    assert {row["udp.srcport"] for row in udp} == {"40001"}
    assert udp[-2:] == [
        {"frame.comment": "node2 to-endpoint 10.0.1.5:40001 -> 10.0.2.7:9999 dropped (POLICY_DENIED)",
         "udp.srcport": "40001"},
        {"frame.comment": "node2 skb:kfree_skb 10.0.1.5:40001 -> 10.0.2.7:9999 freed (TC_EGRESS) by tcx_run",
         "udp.srcport": "40001"},
    ]  # fmt: skip


def test_direction_and_tc_verdict_decoded(session_file: Path) -> None:
    inbound, outbound, neither = "0x00000001", "0x00000002", "0x00000000"
    direction = {
        "from-endpoint": inbound, "from-network": inbound, "net:netif_receive_skb": inbound,
        "to-network": outbound, "to-endpoint": outbound, "net:net_dev_queue": outbound, "net:net_dev_xmit": outbound,
        "stage:ipv4": neither, "stage:ct": neither, "stage:policy": neither, "skb:consume_skb": neither,
        "skb:kfree_skb": neither,
    }  # fmt: skip
    verdict = {PASS: "0", DROP: "2"}
    rows = frames(session_file, "frame.packet_flags_direction", "frame.verdict.ebpf_tc")
    assert rows == [
        {"frame.packet_flags_direction": direction[e.hop.hook], "frame.verdict.ebpf_tc": verdict.get(e.hop.kind, "")}
        for e, _ in _session()
    ]
    drops = frames(session_file, "frame.interface_name", display_filter="frame.verdict.ebpf_tc == 2")
    assert drops == [{"frame.interface_name": "node2/default/server/lxc2002/to-endpoint"}]


def test_section_header_names_the_application_and_the_session(session_file: Path) -> None:
    assert capture_application(session_file) == "flowscope trace"
    comments = capture_comments(session_file)
    assert comments[0] == "filter: host 10.0.2.7; count: 2; duration: 30s; kernel hooks: yes"
    assert "tcp.analyze_sequence_numbers:FALSE" in comments[1]
    assert len(comments) == 2


def test_without_path_ids_a_packets_hops_on_one_node_share_an_id(tmp_path: Path) -> None:
    paths = [tmp_path / "a.pcapng", tmp_path / "b.pcapng"]
    for path in paths:
        with PcapngWriter.create(path, filter="udp") as writer:
            for event, _ in _session():
                writer.write(event)
    rows = frames(paths[0], "frame.packet_id", "frame.comment")
    ids = {}
    for (event, _), row in zip(_session(), rows, strict=True):
        ids.setdefault((event.node_name, event.hop.packet_id), set()).add(row["frame.packet_id"])
    assert sorted(ids) == [("node1", "tcp-n1"), ("node1", "udp-n1"), ("node2", "tcp-n2"), ("node2", "udp-n2")]
    assert all(len(shared) == 1 for shared in ids.values())
    assert len(set().union(*ids.values())) == 4
    assert paths[0].read_bytes() == paths[1].read_bytes()  # the same session, the same ids
    assert capture_comments(paths[0])[0] == "filter: udp"


def test_an_empty_session_is_a_valid_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcapng"
    with PcapngWriter.create(path) as writer:
        writer.write(_ended())
    assert frames(path, "frame.number") == []
    assert capture_application(path) == "flowscope trace"


def test_a_path_id_past_64_bits_is_refused(tmp_path: Path) -> None:
    with PcapngWriter.create(tmp_path / "x.pcapng") as writer, pytest.raises(ValueError, match="64-bit"):
        writer.write(_session()[0][0], path_id=1 << 64)
