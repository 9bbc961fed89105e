"""The agent's history rows made from the batch's record columns are, byte for byte, the rows `row_binary` writes
for the responses the exporter makes of the same records (the way every flow was stored before)."""

from __future__ import annotations

import dataclasses

import numpy as np
from records import (
    ACK,
    CLIENT,
    CLIENT_V6,
    DNS,
    DNS_V4,
    IFINDEX,
    LAB,
    PSH,
    SERVER_V4,
    SERVER_V6,
    SYN,
    TS,
    WORLD_V4,
    arp,
    batch_of,
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

from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.exporter.core import ExportSpec, Selection
from flowscope.observer.history.record_rows import RecordRows
from flowscope.observer.history.rows import row_binary
from flowscope.observer.l7.names import NameSets
from flowscope.observer.metadata import Endpoint
from flowscope.observer.parser import FlowDecoder

FIRST_SEQ = 1000


def corpus() -> np.ndarray:
    """Every kind of record the agent stores, and many flows of the common kinds, ports and times their own."""
    drop = {"type": names.EVENT_DROP, "drop_reason": 133, "verdict": names.VERDICT_DROPPED, "ep_id": CLIENT.id}
    kernel_drop = {"type": names.EVENT_DROP, "drop_reason": 3, "verdict": names.VERDICT_DROPPED, "location": 0x1234}
    reply = events.F_REPLY | events.F_REPLY_KNOWN
    kinds = [
        record(tcp4(flags=SYN)),
        record(tcp4(flags=SYN | ACK), flags=reply),
        record(tcp4(flags=ACK, ns=True)),  # NS: read from the packet, not the header's flags byte
        record(udp4()),
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 132, sctp(5000, 6000)))),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 443, SYN)), 0x86DD)),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 17, udp(40000, 53)), 0x86DD)),
        record(ether(ipv4(CLIENT.ipv4 or "", WORLD_V4, 1, icmp4(8))), ifindex=IFINDEX["lxc1001"]),
        record(ether(ipv4(CLIENT.ipv4 or "", WORLD_V4, 1, icmp4(3, 3)))),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(128)), 0x86DD)),
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 6, tcp(1, 2), options=b"\x01" * 8))),  # IP options
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 17, udp(3, 4)), vlans=[7])),  # a VLAN tag
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(5, 6), [hop_by_hop()]), 0x86DD)),  # an extension header
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 17, udp(7, 8), [fragment_header(3)]), 0x86DD)),
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 17, udp(9, 10), fragment_offset=5))),  # a later fragment
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 47, b"\x00" * 8))),  # GRE: no ports
        record(arp()),
        record(tcp4(), **drop),
        record(udp4(dport=9999), len_cap=0, flags=events.F_KERNEL_DROP, ifindex=0, ep_id=0, **kernel_drop),
        record(tcp4(), type=names.EVENT_POLICY_VERDICT, policy_flags=0b011_001, verdict=names.VERDICT_DROPPED),
        record(tcp4(flags=ACK | PSH), flags=events.F_AGGREGATE, packets=12, bytes=3400, tcp_flags_seen=SYN | ACK),
        record(tcp4(), len_cap=30),  # cut inside the IP header
        record(tcp4(), len_cap=40),  # cut between the ports and the flags
        record(udp4(), ifindex=99),  # an interface the registry does not name
        record(tcp4(), type=names.EVENT_L7, location=5),  # an L7 flow whose entry is gone
        record(udp4(dst=DNS_V4), src_names=1, dst_names=2),
        record(tcp4(dst=WORLD_V4), dst_names=2),
        record(tcp4(), src_identity=12345),
        lost_record(source=names.LOST_KERNEL_BUFFER, count=5, cpu=1),
    ]
    many = [record(tcp4(sport=30000 + i, flags=ACK | (PSH if i % 2 else 0)), ts=TS + i) for i in range(200)]
    many += [record(udp4(sport=20000 + i, dport=53 + i % 3)) for i in range(100)]
    batch = batch_of(*kinds, *many, *kinds)
    batch["ts"] = TS + np.arange(len(batch)) * 1000
    return batch


def decoder() -> FlowDecoder:
    made = FlowDecoder("node1", lab_registry(), b"history", {3: "NO_SOCKET"})
    made.name_sets = NameSets()
    assert made.name_sets.intern(("api.example.com",)) == 1
    assert made.name_sets.intern(("db.example.com", "db")) == 2
    return made


def as_before(made: FlowDecoder, batch: np.ndarray, first_seq: int = FIRST_SEQ) -> list[bytes]:
    """The rows as every flow was stored before: its response made as a message, then row_binary of it."""
    selection = Selection(ExportSpec(), made)
    rows, lost = selection.rows(batch, first_seq)
    return [row_binary(r) for r in selection.messages(batch, rows, lost, first_seq) if r.HasField("flow")]


def flow_rows(batch: np.ndarray) -> np.ndarray:
    return np.flatnonzero(batch["type"] != names.EVENT_LOST)


def test_rows_from_records_are_the_rows_of_the_flows() -> None:
    batch = corpus()
    made = decoder()
    encoder = RecordRows(made)
    got = encoder.rows(batch, flow_rows(batch), FIRST_SEQ)
    want = as_before(made, batch)
    assert len(got) == len(want) == len(flow_rows(batch))
    for row, (mine, theirs) in enumerate(zip(got, want, strict=True)):
        assert mine == theirs, f"row {row} differs"
    # The common kinds came from their key's shared parts: only a sample of each, and the odd ones, were decoded.
    assert encoder.decoded < len(got) // 4


def test_the_next_batch_uses_what_the_first_learned_and_a_new_snapshot_is_followed() -> None:
    made = decoder()
    encoder = RecordRows(made)
    first = corpus()
    encoder.rows(first, flow_rows(first), 0)
    decoded = encoder.decoded
    again = batch_of(*(record(tcp4(sport=50000 + i, flags=ACK)) for i in range(50)))
    assert encoder.rows(again, flow_rows(again), 5000) == as_before(made, again, 5000)
    assert encoder.decoded == decoded  # every key known already
    # The server pod gets a new label: the next flows to it say so.
    relabelled = Endpoint(1002, "node1", "default", "server-5c4b", {"app": "server", "tier": "db"}, "lxc1002",
                          ipv4=SERVER_V4, ipv6=SERVER_V6)  # fmt: skip
    made.registry.update(dataclasses.replace(LAB, endpoints=(CLIENT, relabelled, DNS)))
    assert encoder.rows(again, flow_rows(again), 6000) == as_before(made, again, 6000)
    assert b"k8s:tier=db" in encoder.rows(again, flow_rows(again), 6000)[0]


def test_a_batch_of_lost_events_only_has_no_rows() -> None:
    batch = batch_of(lost_record(), lost_record())
    assert RecordRows(decoder()).rows(batch, flow_rows(batch), 0) == []
