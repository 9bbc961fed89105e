"""Which service a flow names: `destination_service` on the original direction, `source_service` on replies.

An event the datapath marked (XLATED_FLAG in policy_flags, the frontend id in rule) belongs to a connection a
service translated: the id names the service whatever addresses the packet has where it was seen, and the
frontend its client addressed goes into flowscope's extension (original_destination). An unmarked event names
a service when the address it was sent to is a frontend (its source, for a reply), as Hubble's service cache
does: a packet dropped before any translation, or seen where nothing translates, is still named.

One rule for one record (the decoder) and for a batch (the filters), so a flow the filters select by service is
a flow the decoder names with it. A record costs one dict lookup at most; a cluster without services none
(the caller skips an empty table).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import XLATED_FLAG
from flowscope.observer.events import F_IPV6, F_L4, F_REPLY, F_REPLY_KNOWN
from flowscope.observer.parser.columns import Side, has_l4, is_ipv6
from flowscope.observer.service_table import KEY_DTYPE, FrontendInfo, ServiceTable, key_of

_REPLY = F_REPLY | F_REPLY_KNOWN  # both set: conntrack knew the connection and this is its reply


class Header(Protocol):
    """The record fields a service is found by (parser/record.py's Record has them)."""

    @property
    def policy_flags(self) -> int: ...
    @property
    def rule(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def l4_proto(self) -> int: ...
    @property
    def sport(self) -> int: ...
    @property
    def dport(self) -> int: ...
    @property
    def saddr(self) -> bytes: ...
    @property
    def daddr(self) -> bytes: ...


def frontend_of(table: ServiceTable, r: Header) -> FrontendInfo | None:
    """The frontend one record names: by the id the datapath marked it with, or by where it was sent (its
    source, for a reply)."""
    if r.policy_flags & XLATED_FLAG:
        return table.by_id.get(r.rule)
    if r.flags & F_L4:
        address, port = (r.saddr, r.sport) if r.flags & _REPLY == _REPLY else (r.daddr, r.dport)
        return table.by_key.get(key_of(address, port, r.l4_proto, bool(r.flags & F_IPV6)))
    return None


def fill_services(flow: flow_pb2.Flow, frontend: FrontendInfo, r: Header) -> None:
    """Name the service of one record's frontend, and on a translated record the frontend its client addressed."""
    if r.policy_flags & XLATED_FLAG:
        flow.flowscope.original_destination.CopyFrom(frontend.original)
    (flow.source_service if r.flags & _REPLY == _REPLY else flow.destination_service).CopyFrom(frontend.service)


def service_ids(records: np.ndarray, table: ServiceTable, side: Side) -> np.ndarray:
    """The frontend id each record names as its source ("src") or destination ("dst") service, 0 for none."""
    reply = (records["flags"] & _REPLY) == _REPLY
    on_side = reply if side == "src" else ~reply
    marked = (records["policy_flags"] & XLATED_FLAG) != 0
    ids = np.where(on_side & marked, records["rule"], 0).astype(np.uint32)
    keys, numbers = table.sorted_keys
    unmarked = np.flatnonzero(on_side & ~marked & has_l4(records))
    if not len(keys) or not len(unmarked):
        return ids
    rows = records[unmarked]
    wanted = np.zeros(len(rows), dtype=KEY_DTYPE)
    wanted["address"] = rows["saddr" if side == "src" else "daddr"]
    wanted["port"] = rows["sport" if side == "src" else "dport"]
    wanted["protocol"] = rows["l4_proto"]
    wanted["family"] = np.where(is_ipv6(rows), 6, 4)
    packed = wanted.view("S20")
    position = np.minimum(np.searchsorted(keys, packed), len(keys) - 1)
    hit = keys[position] == packed
    ids[unmarked[hit]] = numbers[position[hit]]
    return ids
