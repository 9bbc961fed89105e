"""protocol: the flow's L4 protocol by name, case-insensitively.

Hubble's names: tcp, udp, sctp, icmpv4, icmpv6, and icmp for either ICMP version. Its L7 names (dns, http,
kafka) are accepted too; flowscope flows carry no L7 record, so they select nothing, as on a Hubble node
without an L7 proxy.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import protocol_name
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


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.protocol:
        return []
    numbers: set[int] = set()
    for name in ff.protocol:
        try:
            numbers.update(L4_PROTOCOLS.get(protocol_name(name), ()))
        except ValueError as exc:
            raise FilterError(f"invalid protocol filter: {exc}") from None
    wanted = np.array(sorted(numbers), dtype=np.uint8)

    def by_protocol(batch: Batch) -> np.ndarray:
        records = batch.records
        return has_l4(records) & np.isin(records["l4_proto"], wanted)

    return [by_protocol]
