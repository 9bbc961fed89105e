"""source_ip / destination_ip: an address or a CIDR, IPv4 or IPv6, matched against the packet's addresses.

Addresses are compared as numbers straight from the record's address bytes: an IPv4 prefix is a mask over one
uint32, an IPv6 prefix a mask over two uint64 halves (observer.parser.columns). Hubble compares the text of an
exact address; here "fd00::1" and "fd00:0::1" are the same address.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import Network, network
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate
from flowscope.observer.parser.columns import Side, addresses, has_ip, is_ipv6

_ALL64 = (1 << 64) - 1


def parse_networks(values: Iterable[str], what: str) -> list[Network]:
    """Addresses and CIDRs as networks (an address is a /32 or /128); FilterError names the bad one."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(network(value))
        except ValueError as exc:
            raise FilterError(f"invalid {what} filter: {exc}") from None
    return networks


def _in_networks(records: np.ndarray, side: Side, networks: list[Network]) -> np.ndarray:
    view = addresses(records, side)
    v6 = is_ipv6(records)
    hit = np.zeros(len(records), dtype=bool)
    v4_hosts = [int(n.network_address) for n in networks if n.version == 4 and n.prefixlen == 32]
    if v4_hosts:
        hit |= ~v6 & np.isin(view["v4"], np.array(v4_hosts, dtype=np.uint32))
    for net in networks:
        if net.version == 4 and net.prefixlen < 32:
            mask = int(net.netmask)
            hit |= ~v6 & ((view["v4"] & np.uint32(mask)) == np.uint32(int(net.network_address) & mask))
        elif net.version == 6:
            value, mask = int(net.network_address), int(net.netmask)
            hi_mask, lo_mask = np.uint64(mask >> 64), np.uint64(mask & _ALL64)
            hi = (view["hi"] & hi_mask) == np.uint64(value >> 64)
            lo = (view["lo"] & lo_mask) == np.uint64(value & _ALL64)
            hit |= v6 & hi & lo
    return hit & has_ip(records)


def address_predicate(values: Iterable[str], side: Side, what: str) -> Predicate:
    networks = parse_networks(values, what)

    def by_address(batch: Batch) -> np.ndarray:
        return _in_networks(batch.records, side, networks)

    return by_address


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_ip:
        predicates.append(address_predicate(ff.source_ip, "src", "source IP"))
    if ff.destination_ip:
        predicates.append(address_predicate(ff.destination_ip, "dst", "destination IP"))
    return predicates
