"""FlowDecoder: every Flow field from hand-made records."""

from __future__ import annotations

import uuid

import pytest
from records import (
    ACK,
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    DNS,
    DNS_V4,
    FIN,
    IFINDEX,
    KERNEL_REASONS,
    KNOWN,
    LAB,
    NODE2_V4,
    PSH,
    REPLY,
    SERVER,
    SERVER_V4,
    SERVER_V6,
    SYN,
    TS,
    WORLD_V4,
    arp,
    ether,
    fragment_header,
    hop_by_hop,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    lab_registry,
    lost_record,
    record,
    sctp,
    tcp,
    tcp4,
    udp,
    udp4,
)

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.metadata import Cluster, Endpoint
from flowscope.observer.parser import FlowDecoder


@pytest.fixture
def decoder() -> FlowDecoder:
    return FlowDecoder("node1", lab_registry(), b"instance-1", KERNEL_REASONS)


def decode(decoder: FlowDecoder, packet: bytes = b"", seq: int = 1, **fields: int | bytes) -> flow_pb2.Flow:
    return decoder.decode(record(packet, **fields)[0], seq)


def test_a_tcp_flow_in_full(decoder: FlowDecoder) -> None:
    flow = decode(decoder, tcp4(sport=40000, dport=80, flags=SYN | ACK), flags=KNOWN, trace_reason=1)
    assert flow.time.seconds * 1_000_000_000 + flow.time.nanos == TS
    assert flow.verdict == flow_pb2.FORWARDED
    assert (flow.ethernet.source, flow.ethernet.destination) == ("02:00:00:00:00:0a", "02:00:00:00:00:0b")
    assert (flow.IP.source, flow.IP.destination, flow.IP.ipVersion) == (CLIENT_V4, SERVER_V4, flow_pb2.IPv4)
    assert (flow.l4.TCP.source_port, flow.l4.TCP.destination_port) == (40000, 80)
    assert flow.l4.TCP.flags == flow_pb2.TCPFlags(SYN=True, ACK=True)
    assert flow.source == flow_pb2.Endpoint(
        ID=CLIENT.id,
        identity=CLIENT.identity,
        namespace="default",
        labels=["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"],
        pod_name="client-7d9f",
        cluster_name="lab",
    )
    assert (flow.destination.ID, flow.destination.pod_name) == (SERVER.id, "server-5c4b")
    assert flow.destination.labels == [
        "k8s:app=server",
        "k8s:io.kubernetes.pod.namespace=default",
        "k8s:tier=web",
    ]
    assert flow.Type == flow_pb2.L3_L4
    assert flow.node_name == "node1"
    assert (flow.event_type.type, flow.event_type.sub_type) == (names.EVENT_TRACE, names.TRACE_TO_LXC)
    assert flow.trace_observation_point == flow_pb2.TO_ENDPOINT
    assert flow.trace_reason == flow_pb2.NEW
    assert flow.traffic_direction == flow_pb2.INGRESS
    assert flow.HasField("is_reply") and not flow.is_reply.value
    assert (flow.interface.index, flow.interface.name) == (IFINDEX["lxc1002"], "lxc1002")
    assert flow.Summary == "TCP Flags: SYN, ACK"
    assert not flow.HasField("flowscope")
    assert flow.drop_reason_desc == flow_pb2.DROP_REASON_UNKNOWN


def test_uuid_is_a_stable_function_of_instance_and_seq(decoder: FlowDecoder) -> None:
    first = decode(decoder, tcp4(), seq=42).uuid
    assert decode(decoder, tcp4(), seq=42).uuid == first
    assert decode(decoder, tcp4(), seq=43).uuid != first
    other = FlowDecoder("node1", lab_registry(), b"instance-2").decode(record(tcp4())[0], 42).uuid
    assert other != first
    assert uuid.UUID(first).version == 8


def test_reply_flips_the_direction_and_sets_is_reply(decoder: FlowDecoder) -> None:
    reply = decode(
        decoder,
        tcp4(src=SERVER_V4, dst=CLIENT_V4, flags=SYN | ACK),
        flags=REPLY,
        subtype=names.TRACE_FROM_LXC,
    )
    assert reply.is_reply.value and reply.reply
    assert reply.traffic_direction == flow_pb2.INGRESS
    assert reply.trace_observation_point == flow_pb2.FROM_ENDPOINT
    request = decode(decoder, tcp4(), flags=KNOWN, subtype=names.TRACE_FROM_LXC, ep_id=CLIENT.id)
    assert request.traffic_direction == flow_pb2.EGRESS and not request.is_reply.value


def test_without_conntrack_reply_and_direction_are_unknown(decoder: FlowDecoder) -> None:
    flow = decode(decoder, tcp4())
    assert not flow.HasField("is_reply")
    assert flow.traffic_direction == flow_pb2.TRAFFIC_DIRECTION_UNKNOWN


def test_identity_from_the_datapath_wins(decoder: FlowDecoder) -> None:
    flow = decode(decoder, tcp4(), src_identity=777)
    assert flow.source.identity == 777
    assert flow.source.pod_name == "client-7d9f"  # names still come from the address
    assert flow.destination.identity == SERVER.identity


def test_addresses_nobody_owns_are_world_and_nodes_are_host_or_remote_node(decoder: FlowDecoder) -> None:
    flow = decode(decoder, tcp4(src=WORLD_V4, dst=NODE2_V4))
    assert (flow.source.identity, list(flow.source.labels)) == (2, ["reserved:world"])
    assert flow.source.cluster_name == "lab" and not flow.source.pod_name and flow.source.ID == 0
    assert (flow.destination.identity, list(flow.destination.labels)) == (6, ["reserved:remote-node"])


def test_remote_pods_have_names_but_no_endpoint_id(decoder: FlowDecoder) -> None:
    flow = decode(decoder, udp4(dst=DNS_V4))
    assert (flow.destination.namespace, flow.destination.pod_name, flow.destination.ID) == (
        "kube-system",
        "coredns-abc",
        0,
    )
    assert flow.destination.identity == DNS.identity


def test_udp_over_ipv6(decoder: FlowDecoder) -> None:
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 17, udp(40000, 53)), 0x86DD)
    flow = decode(decoder, frame)
    assert (flow.IP.source, flow.IP.destination, flow.IP.ipVersion) == (CLIENT_V6, SERVER_V6, flow_pb2.IPv6)
    assert (flow.l4.UDP.source_port, flow.l4.UDP.destination_port) == (40000, 53)
    assert flow.source.pod_name == "client-7d9f" and flow.Summary == "UDP"


def test_icmp_and_sctp(decoder: FlowDecoder) -> None:
    ping = decode(decoder, ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8))))
    assert (ping.l4.ICMPv4.type, ping.l4.ICMPv4.code, ping.Summary) == (8, 0, "ICMPv4 EchoRequest")
    pong = decode(decoder, ether(ipv6(SERVER_V6, CLIENT_V6, 58, icmp6(129)), 0x86DD))
    assert (pong.l4.ICMPv6.type, pong.Summary) == (129, "ICMPv6 EchoReply")
    assoc = decode(decoder, ether(ipv4(CLIENT_V4, SERVER_V4, 132, sctp(3868, 3869))))
    assert (assoc.l4.SCTP.source_port, assoc.l4.SCTP.destination_port, assoc.Summary) == (3868, 3869, "SCTP")


def test_vlan_tagged_frames_decode_the_same(decoder: FlowDecoder) -> None:
    flow = decode(decoder, ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(1, 2, SYN)), vlans=[10, 20]))
    assert flow.IP.source == CLIENT_V4 and flow.l4.TCP.destination_port == 2


def test_ipv6_extension_headers(decoder: FlowDecoder) -> None:
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN), [hop_by_hop(), fragment_header()]), 0x86DD)
    flow = decode(decoder, frame)
    assert flow.l4.TCP.destination_port == 443 and flow.Summary == "TCP Flags: SYN"


def test_fragments_have_no_l4(decoder: FlowDecoder) -> None:
    flow = decode(decoder, ether(ipv4(CLIENT_V4, SERVER_V4, 17, bytes(16), fragment_offset=185)))
    assert flow.IP.source == CLIENT_V4 and not flow.HasField("l4") and flow.Summary == "IPv4"
    assert not flow.flowscope.truncated


@pytest.mark.parametrize(
    ("length", "has_ip", "has_l4", "summary"),
    [(12, False, False, "Ethernet"), (14 + 10, False, False, "IPv4"), (14 + 20 + 6, True, True, "TCP")],
)
def test_truncated_packets_decode_what_is_there(
    decoder: FlowDecoder, length: int, has_ip: bool, has_l4: bool, summary: str
) -> None:
    flow = decode(decoder, tcp4()[:length])  # the packet itself was this short: the header knows no more
    assert flow.flowscope.truncated
    assert flow.HasField("ethernet")
    assert flow.HasField("IP") == has_ip and flow.HasField("l4") == has_l4
    assert flow.Summary == summary
    if has_l4:
        assert flow.l4.TCP.destination_port == 80 and not flow.l4.TCP.HasField("flags")


def test_what_the_captured_bytes_miss_comes_from_the_header(decoder: FlowDecoder) -> None:
    """The datapath parses the whole packet; it keeps only its first bytes."""
    chain = [hop_by_hop(units=10)]  # 88 bytes of options: the TCP header starts past byte 128
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN | ACK), chain), 0x86DD)
    columns = {"flags": events.F_IPV6 | events.F_L4, "l4_proto": 6, "sport": 40000, "dport": 443, "tcp_flags": 0x12}
    flow = decode(decoder, frame, **columns)
    assert flow.flowscope.truncated
    assert (flow.l4.TCP.source_port, flow.l4.TCP.destination_port) == (40000, 443)
    assert flow.l4.TCP.flags == flow_pb2.TCPFlags(SYN=True, ACK=True) and flow.Summary == "TCP Flags: SYN, ACK"
    cut = decode(decoder, tcp4(flags=SYN), len_cap=20)  # bytes end inside the IP header
    assert (cut.IP.source, cut.l4.TCP.destination_port, cut.Summary) == (CLIENT_V4, 80, "TCP Flags: SYN")
    assert cut.flowscope.truncated and cut.HasField("ethernet")


def test_arp(decoder: FlowDecoder) -> None:
    flow = decode(decoder, arp())
    assert flow.ethernet.destination == "ff:ff:ff:ff:ff:ff"
    assert not flow.HasField("IP") and not flow.HasField("l4")
    assert flow.Summary == "ARP"
    assert list(flow.source.labels) == ["reserved:world"]


def test_cilium_drop(decoder: FlowDecoder) -> None:
    flow = decode(
        decoder,
        tcp4(),
        type=names.EVENT_DROP,
        subtype=133,
        drop_reason=133,
        verdict=names.VERDICT_DROPPED,
        ep_id=CLIENT.id,
        ifindex=IFINDEX["lxc1001"],
    )
    assert flow.verdict == flow_pb2.DROPPED
    assert (flow.drop_reason, flow.drop_reason_desc) == (133, flow_pb2.POLICY_DENIED)
    assert (flow.event_type.type, flow.event_type.sub_type) == (1, 133)
    assert flow.trace_observation_point == flow_pb2.UNKNOWN_POINT
    assert flow.traffic_direction == flow_pb2.EGRESS  # dropped at the endpoint that sent it
    assert not flow.HasField("is_reply")
    inbound = decode(
        decoder,
        tcp4(),
        type=names.EVENT_DROP,
        subtype=133,
        drop_reason=133,
        verdict=names.VERDICT_DROPPED,
        ep_id=SERVER.id,
    )
    assert inbound.traffic_direction == flow_pb2.INGRESS


def test_kernel_drop_without_packet_bytes_uses_the_header(decoder: FlowDecoder) -> None:
    flow = decode(
        decoder,
        udp4(dport=9999),
        len_cap=0,
        type=names.EVENT_DROP,
        subtype=3,
        drop_reason=3,
        flags=events.F_KERNEL_DROP,
        verdict=names.VERDICT_DROPPED,
        ep_id=0,
        ifindex=0,
        location=0xFFFFFFFF81234567,
    )
    assert (flow.IP.source, flow.IP.destination) == (CLIENT_V4, DNS_V4)
    assert flow.l4.UDP.destination_port == 9999 and flow.Summary == "UDP"
    assert not flow.HasField("ethernet") and not flow.HasField("interface")
    assert flow.drop_reason_desc == flow_pb2.DROP_REASON_UNKNOWN and flow.drop_reason == 0
    assert flow.flowscope.kernel_drop_reason == "NO_SOCKET"
    assert flow.flowscope.drop_location == "0xffffffff81234567"
    assert flow.traffic_direction == flow_pb2.TRAFFIC_DIRECTION_UNKNOWN


def test_a_made_up_all_zero_ethernet_header_is_not_shown(decoder: FlowDecoder) -> None:
    """The kernel drop program puts a zero header before a packet that had none yet: no Ethernet to report."""
    packet = ether(udp4(dport=9999)[14:], src="00:00:00:00:00:00", dst="00:00:00:00:00:00")
    flow = decode(decoder, packet, type=names.EVENT_DROP, drop_reason=3, flags=events.F_KERNEL_DROP, verdict=2)
    assert not flow.HasField("ethernet")
    assert flow.l4.UDP.destination_port == 9999


def test_kernel_drop_names_and_locations() -> None:
    located = FlowDecoder("node1", lab_registry(), b"i", KERNEL_REASONS, locate=lambda a: "udp_queue_rcv_skb+0x1c")
    flow = located.decode(
        record(
            udp4(),
            type=names.EVENT_DROP,
            drop_reason=77,
            flags=events.F_KERNEL_DROP,
            verdict=names.VERDICT_DROPPED,
            location=0x1234,
        )[0],
        1,
    )
    assert flow.flowscope.kernel_drop_reason == "77"  # a reason this kernel's names do not cover
    assert flow.flowscope.drop_location == "udp_queue_rcv_skb+0x1c"


def test_header_fallback_for_tcp_and_ipv6() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"i")
    frame = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(1, 2, FIN | ACK)), 0x86DD)
    flow = decoder.decode(record(frame, len_cap=0)[0], 1)
    assert (flow.IP.source, flow.IP.ipVersion) == (CLIENT_V6, flow_pb2.IPv6)
    assert flow.l4.TCP.flags == flow_pb2.TCPFlags(FIN=True, ACK=True)
    assert flow.source.pod_name == "client-7d9f"
    non_ip = decoder.decode(record(arp(), len_cap=0)[0], 2)
    assert not non_ip.HasField("IP") and non_ip.Summary == "ARP"


def test_policy_verdict(decoder: FlowDecoder) -> None:
    flow = decode(
        decoder,
        tcp4(),
        type=names.EVENT_POLICY_VERDICT,
        subtype=0,
        policy_flags=0b011_001,
        verdict=names.VERDICT_DROPPED,
        drop_reason=133,
    )
    assert flow.traffic_direction == flow_pb2.INGRESS
    assert flow.policy_match_type == 3
    assert flow.verdict == flow_pb2.DROPPED and flow.drop_reason_desc == flow_pb2.POLICY_DENIED
    egress = decode(decoder, tcp4(), type=names.EVENT_POLICY_VERDICT, policy_flags=0b001_010)
    assert egress.traffic_direction == flow_pb2.EGRESS and egress.policy_match_type == 1
    assert egress.trace_observation_point == flow_pb2.UNKNOWN_POINT


def test_aggregate_report(decoder: FlowDecoder) -> None:
    flow = decode(
        decoder,
        tcp4(flags=ACK | PSH),
        flags=events.F_AGGREGATE,
        packets=12,
        bytes=3400,
        tcp_flags_seen=SYN | ACK | PSH,
    )
    assert flow.flowscope.aggregated
    assert (flow.flowscope.packets, flow.flowscope.bytes) == (12, 3400)
    assert flow.flowscope.tcp_flags_seen == flow_pb2.TCPFlags(SYN=True, ACK=True, PSH=True)
    assert flow.l4.TCP.flags == flow_pb2.TCPFlags(ACK=True, PSH=True)


def test_observation_points_other_than_to_lxc_keep_their_number(decoder: FlowDecoder) -> None:
    flow = decode(decoder, tcp4(), subtype=names.TRACE_TO_STACK)
    assert flow.trace_observation_point == flow_pb2.TO_STACK


def test_no_interface_when_ifindex_is_zero_and_unnamed_interfaces(decoder: FlowDecoder) -> None:
    assert not decode(decoder, tcp4(), ifindex=0).HasField("interface")
    unnamed = decode(decoder, tcp4(), ifindex=99)
    assert (unnamed.interface.index, unnamed.interface.name) == (99, "")


def test_lost_events(decoder: FlowDecoder) -> None:
    lost = decoder.decode_lost(lost_record(names.LOST_KERNEL_BUFFER, count=42, cpu=1)[0])
    assert lost.source == flow_pb2.PERF_EVENT_RING_BUFFER and lost.num_events_lost == 42
    assert lost.HasField("cpu") and lost.cpu.value == 1
    assert lost.first == lost.last and lost.last.seconds * 1_000_000_000 + lost.last.nanos == lost_record()["ts"][0]
    unknown_cpu = decoder.decode_lost(lost_record(names.LOST_RING_OVERRUN, cpu=0xFF)[0])
    assert unknown_cpu.source == flow_pb2.HUBBLE_RING_BUFFER and not unknown_cpu.HasField("cpu")


def test_registry_changes_are_seen() -> None:
    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"i")
    newcomer = Endpoint(1003, "node1", "default", "late-1", {"app": "late"}, "lxc1003", ipv4="10.200.1.13")
    assert decoder.decode(record(tcp4(dst="10.200.1.13"))[0], 1).destination.identity == 2
    registry.update(Cluster(name=LAB.name, nodes=LAB.nodes, endpoints=(*LAB.endpoints, newcomer)))
    assert decoder.decode(record(tcp4(dst="10.200.1.13"))[0], 2).destination.pod_name == "late-1"


def test_records_of_another_capture_length_decode_too(decoder: FlowDecoder) -> None:
    flow = decoder.decode(record(tcp4(flags=FIN), caplen=64)[0], 1)
    assert flow.Summary == "TCP Flags: FIN" and flow.source.pod_name == CLIENT.pod
