"""Flow uuids, and the endpoint index answering for a batch what the decoder answers for one record."""

from __future__ import annotations

import ipaddress
import uuid

import numpy as np
import pytest
from records import (
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    NODE1_V4,
    SERVER,
    SERVER_V6,
    WORLD_V4,
    arp,
    ether,
    icmp6,
    ipv6,
    lab_registry,
    record,
    tcp4,
    udp,
)

from flowscope.common.names import IDENTITY_HOST
from flowscope.observer.parser import FlowIds, index_of, parse_packet


def test_uuids_round_trip_to_their_sequence_number() -> None:
    ids = FlowIds(b"agent-a")
    for seq in (0, 1, 65535, 2**40 + 7):
        text = ids.uuid(seq)
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 8 and parsed.variant == uuid.RFC_4122
        assert ids.seq(text) == seq
        assert ids.seq(text.upper()) == seq


def test_uuids_of_another_instance_are_not_ours() -> None:
    assert FlowIds(b"agent-a").seq(FlowIds(b"agent-b").uuid(5)) is None
    assert FlowIds(b"agent-a").seq(str(uuid.uuid4())) is None


def test_a_non_uuid_is_an_error() -> None:
    with pytest.raises(ValueError):
        FlowIds(b"a").seq("not-a-uuid")


def test_index_entries_agree_with_one_by_one_lookups() -> None:
    snapshot = lab_registry().snapshot
    index = index_of(snapshot)
    assert index_of(snapshot) is index
    records = np.concatenate(
        [
            record(tcp4(src=CLIENT_V4, dst=DNS_V4)),
            record(tcp4(src=WORLD_V4, dst=NODE1_V4)),
            record(ether(ipv6(CLIENT_V6, SERVER_V6, 17, udp(1, 2)), 0x86DD)),
            record(ether(ipv6("2001:db8::1", SERVER_V6, 17, udp(1, 2)), 0x86DD)),
            record(arp()),
        ]
    )
    for side, column in (("src", "saddr"), ("dst", "daddr")):
        entries = index.entries_for(records, side)  # type: ignore[arg-type]
        for row, entry in zip(records, entries, strict=True):
            width = 16 if row["flags"] & 1 else 4
            packed = bytes(row[column])[:width] if row["ethertype"] in (0x0800, 0x86DD) else b""
            assert entry == index.entry_of(packed)
            expected = snapshot.lookup(ipaddress.ip_address(packed) if packed else None)
            assert index.entries[entry] == expected
    assert index.entries_for(records[4:], "src").tolist() == [index.world]


def test_an_address_nobody_owns_is_named_by_the_datapath_identity() -> None:
    """A pod's link-local address is in no registry, but from-endpoint knows whose packet it is: the batch answer
    and the one-record answer both take the endpoint the identity stands for; an address someone owns wins over
    the identity, and an identity nobody knows (or none) leaves world."""
    snapshot = lab_registry().snapshot
    index = index_of(snapshot)
    client, server = CLIENT.identity, SERVER.identity
    cases = [  # (record, source's entry, destination's entry)
        (ether(ipv6("fe80::11", "ff02::2", 58, icmp6(133)), 0x86DD), client, 0),
        (ether(ipv6("fe80::1", "fe80::12", 58, icmp6(136)), 0x86DD), 0, server),
        (arp(), client, 0),
        (tcp4(src=CLIENT_V4, dst=DNS_V4), server, 12345),  # addresses owned: the identities do not rename them
        (ether(ipv6("fe80::99", "fe80::1", 17, udp(1, 2)), 0x86DD), 12345, IDENTITY_HOST),
    ]
    records = np.concatenate(
        [record(packet, src_identity=src, dst_identity=dst) for packet, src, dst in cases]  # type: ignore[arg-type]
    )
    named = {side: index.entries_for(records, side).tolist() for side in ("src", "dst")}  # type: ignore[arg-type]
    for row, (packet, src, dst) in enumerate(cases):
        parsed = parse_packet(packet)
        assert named["src"][row] == index.entry_of(parsed.src_ip, src)
        assert named["dst"][row] == index.entry_of(parsed.dst_ip, dst)
    fe80, to_fe80, arp_row, owned, unknown = (index.entries[entry] for entry in named["src"])
    assert (fe80.identity, fe80.namespace, fe80.pod, fe80.id) == (client, "default", "", 0)
    assert fe80.labels == ("k8s:app=client", "k8s:io.kubernetes.pod.namespace=default")
    assert arp_row == fe80
    assert index.entries[named["dst"][1]].labels == ("k8s:app=server", "k8s:io.kubernetes.pod.namespace=default",
                                                     "k8s:tier=web")  # fmt: skip
    assert to_fe80 == snapshot.world  # identity 0: nobody to name
    assert owned == snapshot.lookup(ipaddress.ip_address(CLIENT_V4))
    assert index.entries[named["dst"][3]] == snapshot.lookup(ipaddress.ip_address(DNS_V4))
    assert unknown == snapshot.world
    host = index.entries[named["dst"][4]]
    assert (host.identity, host.labels, host.pod, host.node) == (IDENTITY_HOST, ("reserved:host",), "", "")
