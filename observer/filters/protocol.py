"""protocol: the flow's L4 protocol by name, case-insensitively.

Hubble's names: tcp, udp, sctp, icmpv4, icmpv6, and icmp for either ICMP version. Its L7 names (dns, http,
kafka) select the L7 flows of that kind (the entries behind type-129 records, observer/filters/l7_rows.py), as
Hubble's select flows by their `l7` record: `--protocol dns` shows DNS messages, not every packet to port 53.
flowscope parses no Kafka, so `kafka` selects nothing.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import protocol_name
from flowscope.observer.filters import l7_rows
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate
from flowscope.observer.parser.columns import has_l4
from flowscope.observer.parser.packet import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP

L4_PROTOCOLS = {
    "tcp": (IPPROTO_TCP,),
    "udp": (IPPROTO_UDP,),
    "sctp": (IPPROTO_SCTP,),
    "icmp": (IPPROTO_ICMP, IPPROTO_ICMPV6),
    "icmpv4": (IPPROTO_ICMP,),
    "icmpv6": (IPPROTO_ICMPV6,),
}


def l7_kind(entry: l7_rows.L7Record) -> str:
    return entry.kind


def protocol_names(ff: flow_pb2.FlowFilter) -> list[str]:
    """The filter's protocols, lowered; an unknown one is the request's error (the ring's filter and the
    history's SQL read them alike)."""
    try:
        return [protocol_name(name) for name in ff.protocol]
    except ValueError as exc:
        raise FilterError(f"invalid protocol filter: {exc}") from None


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.protocol:
        return []
    numbers: set[int] = set()
    l7_kinds: set[str] = set()
    for lowered in protocol_names(ff):
        numbers.update(L4_PROTOCOLS.get(lowered, ()))
        if lowered not in L4_PROTOCOLS:
            l7_kinds.add(lowered)
    wanted = np.array(sorted(numbers), dtype=np.uint8)
    of_l7_kind = l7_rows.matching(ctx.l7, l7_kind, l7_kinds.__contains__) if l7_kinds else None

    def by_protocol(batch: Batch) -> np.ndarray:
        records = batch.records
        mask = has_l4(records) & np.isin(records["l4_proto"], wanted)
        return mask if of_l7_kind is None else mask | of_l7_kind(batch)

    return [by_protocol]
