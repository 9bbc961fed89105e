"""source_port / destination_port: TCP, UDP and SCTP ports (ICMP has none), as decimal numbers 0-65535."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import port_number
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate
from flowscope.observer.parser.columns import has_l4
from flowscope.observer.parser.packet import IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP

_WITH_PORTS = np.array([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP], dtype=np.uint8)


def parse_ports(values: Iterable[str], what: str) -> np.ndarray:
    ports = []
    for value in values:
        try:
            ports.append(port_number(value))
        except ValueError as exc:
            raise FilterError(f"invalid {what} filter: {exc}") from None
    return np.array(ports, dtype=np.uint16)


def _port_predicate(values: Iterable[str], column: str, what: str) -> Predicate:
    ports = parse_ports(values, what)

    def by_port(batch: Batch) -> np.ndarray:
        records = batch.records
        carries_ports = has_l4(records) & np.isin(records["l4_proto"], _WITH_PORTS)
        return carries_ports & np.isin(records[column], ports)

    return by_port


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_port:
        predicates.append(_port_predicate(ff.source_port, "sport", "source port"))
    if ff.destination_port:
        predicates.append(_port_predicate(ff.destination_port, "dport", "destination port"))
    return predicates
