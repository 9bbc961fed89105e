"""Flow uuids, and the endpoint index answering for a batch what the decoder answers for one record."""

from __future__ import annotations

import ipaddress
import uuid

import numpy as np
import pytest
from records import (
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    NODE1_V4,
    SERVER_V6,
    WORLD_V4,
    arp,
    ether,
    ipv6,
    lab_registry,
    record,
    tcp4,
    udp,
)

from flowscope.observer.parser import FlowIds, index_of


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
