"""ip_version: IPv4, IPv6, or IP_NOT_USED for frames that carry no IP header."""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser.columns import has_ip, is_ipv6


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.ip_version:
        return []
    wanted = np.array(list(ff.ip_version), dtype=np.int64)

    def by_ip_version(batch: Batch) -> np.ndarray:
        records = batch.records
        version = np.where(has_ip(records), np.where(is_ipv6(records), flow_pb2.IPv6, flow_pb2.IPv4), 0)
        return np.isin(version, wanted)

    return [by_ip_version]
