"""The agent's history rows made from the batch's record columns are, byte for byte, the rows `row_binary` writes
for the responses the exporter makes of the same records (the way every flow was stored before)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
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
from service_records import KUBE_DNS_V4, WEB_V4, frontend_id, services_registry, translated

from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.exporter.core import ExportSpec, Selection
from flowscope.observer.history.record_rows import RecordRows
from flowscope.observer.history.rows import row_binary
from flowscope.observer.l7.names import NameSets
from flowscope.observer.metadata import Endpoint
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.policy import RuleOrigin

FIRST_SEQ = 1000
TLS_HELLO = b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"

# Columns the decoder reads, each given other values in copies of the corpus: a key that missed one would give
# some flow the columns or bytes of another.
VARIED = {
    "type": 256, "subtype": 256, "flags": 256, "ifindex": 16, "len_cap": 100, "ep_id": 1003, "src_identity": 3,
    "dst_identity": 3, "trace_reason": 8, "verdict": 4, "policy_flags": 256, "drop_reason": 200,
    "tcp_flags_seen": 256, "packets": 2**32, "bytes": 2**40, "rule": 6, "location": 4, "src_names": 3,
    "dst_names": 3, "sport": 2**16, "l4_proto": 256, "tcp_flags": 256,
}  # fmt: skip


class Rules:
    """A policy rule table: odd rules come from a policy, rules not divisible by 3 have a name."""

    def name(self, number: int) -> str | None:
        return f"rule-{number}" if number % 3 else None

    def origin(self, number: int) -> RuleOrigin | None:
        return (
            RuleOrigin(f"allow-{number}", "default", "CiliumNetworkPolicy", ("k8s:app=x",), 2) if number % 2 else None
        )


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
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 6, tcp(40000, 443, ACK | PSH, payload=TLS_HELLO)))),
        record(ether(ipv4(CLIENT.ipv4 or "", SERVER_V4, 6, tcp(40001, 443, ACK | PSH, payload=b"x" * 20)))),
        record(tcp4(), type=names.EVENT_POLICY_VERDICT, rule=3, verdict=names.VERDICT_FORWARDED),
        record(tcp4(), type=names.EVENT_POLICY_VERDICT, rule=4, verdict=names.VERDICT_DROPPED),
        translated(tcp4(CLIENT.ipv4 or "", SERVER_V4), frontend_id(WEB_V4, 80)),
        record(tcp4(CLIENT.ipv4 or "", WEB_V4, 40000, 80)),  # to a frontend, unmarked
        record(udp4(CLIENT.ipv4 or "", KUBE_DNS_V4, 40000, 53)),
        lost_record(source=names.LOST_KERNEL_BUFFER, count=5, cpu=1),
    ]
    many = [record(tcp4(sport=30000 + i, flags=ACK | (PSH if i % 2 else 0)), ts=TS + i) for i in range(200)]
    many += [record(udp4(sport=20000 + i, dport=53 + i % 3)) for i in range(100)]
    batch = batch_of(*kinds, *many, *kinds)
    batch["ts"] = TS + np.arange(len(batch)) * 1000
    return batch


def decoder(services: bool = False) -> FlowDecoder:
    registry = services_registry() if services else lab_registry()
    made = FlowDecoder("node1", registry, b"history", {3: "NO_SOCKET"}, lambda at: f"kfree+0x{at:x}")
    made.rules = Rules()
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


@pytest.mark.parametrize("services", [False, True])
def test_rows_of_records_that_differ_in_one_column_at_a_time(services: bool) -> None:
    base = corpus()
    rng = np.random.default_rng(16)
    copies = []
    for column, values in VARIED.items():
        copy = base.copy()
        copy[column] = rng.integers(0, values, len(copy))
        copies.append(copy)
    vni = base.copy()
    vni["vni"] = [bytes((0, 0, n % 3)) for n in range(len(vni))]
    macs = base.copy()
    macs["data"] = [bytes(data)[:11] + bytes((n % 2,)) + bytes(data)[12:] for n, data in enumerate(macs["data"])]
    batch = np.concatenate([base, *copies, vni, macs])
    made = decoder(services)
    assert RecordRows(made).rows(batch, flow_rows(batch), FIRST_SEQ) == as_before(made, batch)


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
