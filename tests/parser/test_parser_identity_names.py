"""An endpoint whose address nobody owns but whose identity the datapath gave: named from the identity, as
Hubble's ResolveEndpoint names it (labels and namespace from the identity, no pod name, no endpoint id)."""

from __future__ import annotations

from records import CLIENT, CLIENT_V4, IFINDEX, SERVER, SERVER_V4, ether, icmp6, ipv6, lab_registry, record, tcp4

from flowscope.api.flow import flow_pb2 as pb
from flowscope.common import names
from flowscope.common.names import IDENTITY_HOST, IDENTITY_WORLD
from flowscope.observer.parser import FlowDecoder

CLIENT_LABELS = ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"]


def decode(packet: bytes, src_identity: int, dst_identity: int = 0, **fields: int) -> pb.Flow:
    decoder = FlowDecoder("node1", lab_registry(), b"identity-names")
    return decoder.decode(record(packet, src_identity=src_identity, dst_identity=dst_identity, **fields), 0)


def router_solicitation(src: str = "fe80::11") -> bytes:
    return ether(ipv6(src, "ff02::2", 58, icmp6(133)), 0x86DD)


def test_a_pods_link_local_packet_carries_its_labels_and_namespace() -> None:
    flow = decode(
        router_solicitation(),
        CLIENT.identity,
        IDENTITY_WORLD,
        subtype=names.TRACE_FROM_LXC,
        ep_id=CLIENT.id,
        ifindex=IFINDEX["lxc1001"],
    )
    source = flow.source
    assert (source.identity, source.namespace, list(source.labels)) == (CLIENT.identity, "default", CLIENT_LABELS)
    assert (source.pod_name, source.ID, source.cluster_name) == ("", 0, "lab")
    assert list(flow.destination.labels) == ["reserved:world"] and flow.destination.identity == IDENTITY_WORLD


def test_the_destination_side_too() -> None:
    flow = decode(ether(ipv6("fe80::1", "fe80::12", 58, icmp6(136)), 0x86DD), IDENTITY_HOST, SERVER.identity)
    destination = flow.destination
    assert (destination.identity, destination.namespace, destination.pod_name) == (SERVER.identity, "default", "")
    assert "k8s:tier=web" in destination.labels
    assert (flow.source.identity, list(flow.source.labels)) == (IDENTITY_HOST, ["reserved:host"])


def test_an_owned_address_keeps_its_names_and_shows_the_datapaths_number() -> None:
    flow = decode(tcp4(CLIENT_V4, SERVER_V4), SERVER.identity, CLIENT.identity)
    assert (flow.source.pod_name, flow.source.identity) == (CLIENT.pod, SERVER.identity)
    assert list(flow.source.labels) == CLIENT_LABELS


def test_an_identity_nobody_knows_leaves_world() -> None:
    flow = decode(router_solicitation("fe80::99"), 12345)
    assert (flow.source.identity, list(flow.source.labels), flow.source.namespace) == (12345, ["reserved:world"], "")
    unnamed = decode(router_solicitation("fe80::99"), 0)
    assert (unnamed.source.identity, list(unnamed.source.labels)) == (IDENTITY_WORLD, ["reserved:world"])
