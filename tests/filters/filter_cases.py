"""A batch of varied records the filter tests select from, and a helper to run FlowFilters over records."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from records import (
    ACK,
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    IFINDEX,
    KNOWN,
    REPLY,
    SERVER_V4,
    SERVER_V6,
    SYN,
    WORLD_V4,
    arp,
    batch_of,
    ether,
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
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.filters import Batch, FilterContext, compile_filters

INSTANCE = b"filter-tests"
AT_CLIENT = {"ep_id": CLIENT.id, "ifindex": IFINDEX["lxc1001"]}
DROP = {"type": names.EVENT_DROP, "verdict": names.VERDICT_DROPPED}

# name -> record; the names say what each is, tests refer to them by name.
ZOO: dict[str, np.ndarray] = {
    "syn": record(tcp4(flags=SYN), flags=KNOWN, trace_reason=1),
    "synack": record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY, subtype=names.TRACE_FROM_LXC),
    "dns": record(udp4(), flags=KNOWN, subtype=names.TRACE_FROM_LXC, **AT_CLIENT),
    "world": record(tcp4(WORLD_V4, SERVER_V4, 51000, 443)),
    "ping": record(ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8))), flags=KNOWN),
    "pong6": record(ether(ipv6(SERVER_V6, CLIENT_V6, 58, icmp6(129)), 0x86DD), flags=REPLY),
    "arp": record(arp(), ifindex=IFINDEX["eth0"], ep_id=0),
    "denied": record(tcp4(flags=SYN), subtype=133, drop_reason=133, **DROP, **AT_CLIENT),
    "kernel": record(
        udp4(dport=9999),
        len_cap=0,
        subtype=3,
        drop_reason=3,
        flags=events.F_KERNEL_DROP,
        ifindex=0,
        ep_id=0,
        **DROP,
    ),
    "policy": record(tcp4(dport=8080), type=names.EVENT_POLICY_VERDICT, subtype=0, policy_flags=0b001_010),
    "sctp": record(ether(ipv4(CLIENT_V4, SERVER_V4, 132, sctp(3868, 3869))), flags=KNOWN),
    "ns6": record(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40001, 80, ACK, ns=True)), 0x86DD), flags=KNOWN),
    "fragment": record(ether(ipv4(CLIENT_V4, DNS_V4, 17, bytes(24), fragment_offset=185)), **AT_CLIENT),
    "to_dns6": record(ether(ipv6(CLIENT_V6, "fd00:200:2::21", 17, udp(40002, 53)), 0x86DD), **AT_CLIENT),
}
NAMES = list(ZOO)
RECORDS = batch_of(list(ZOO.values()))


def context(registry: EndpointRegistry | None = None, node: str = "node1") -> FilterContext:
    snapshot = (registry or lab_registry()).snapshot
    return FilterContext(node_name=node, snapshot=snapshot, cluster_name="lab", instance=INSTANCE)


def select(
    whitelist: Sequence[flow_pb2.FlowFilter] = (),
    blacklist: Sequence[flow_pb2.FlowFilter] = (),
    records: np.ndarray = RECORDS,
    ctx: FilterContext | None = None,
) -> list[str]:
    """The names (ZOO) or row numbers of the records the filters select."""
    predicate = compile_filters(whitelist, blacklist, ctx or context())
    mask = predicate(Batch(records, np.arange(len(records), dtype=np.uint64)))
    assert mask.dtype == bool and mask.shape == (len(records),)
    rows = np.flatnonzero(mask).tolist()
    return [NAMES[row] for row in rows] if records is RECORDS else [str(row) for row in rows]


def only(**fields: object) -> list[str]:
    """The ZOO records one FlowFilter with these fields selects."""
    return select([flow_pb2.FlowFilter(**fields)])  # type: ignore[arg-type]


__all__ = ["NAMES", "RECORDS", "ZOO", "context", "lost_record", "only", "select"]
