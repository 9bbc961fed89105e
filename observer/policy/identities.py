"""The identities a policy can name: the cluster's endpoints (by their labels), the reserved ones, and
identities of their own for the CIDRs a policy mentions.

Why CIDRs get identities: the datapath decides by identity alone (one hash lookup per key), so an address
outside the cluster must resolve to a number a policy entry can carry. As Cilium allocates local CIDR
identities, each prefix a policy names gets one (above 2^24, out of the range of label identities) and goes
into the ipcache; the longest prefix wins there, so an address gets the identity of the narrowest prefix
around it, and a pod's or node's own /32 (or /128) still wins over any CIDR. A CIDR peer therefore selects the
identities of every named prefix inside it, and `world` selects plain world and every CIDR identity.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flowscope.common.names import IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD
from flowscope.observer.metadata import Cluster
from flowscope.observer.policy.model import NAMESPACE_LABEL, IPNetwork

CIDR_IDENTITY_BASE = 1 << 24
_CIDR_IDENTITY_SPACE = (1 << 24) - 1
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_ALL_V4 = ipaddress.IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Endpoints:
    """Label identities of the cluster's endpoints: identity -> its labels, and the pods that carry it."""

    labels: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    pods: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # "namespace/pod", sorted

    @classmethod
    def of(cls, cluster: Cluster) -> Endpoints:
        labels: dict[int, dict[str, str]] = {}
        pods: dict[int, list[str]] = {}
        for ep in cluster.endpoints:
            labels[ep.identity] = {**ep.labels, NAMESPACE_LABEL: ep.namespace}
            pods.setdefault(ep.identity, []).append(f"{ep.namespace}/{ep.pod}")
        return cls(labels, {identity: tuple(sorted(names)) for identity, names in pods.items()})


def cidr_identities(prefixes: Iterable[IPNetwork]) -> dict[IPNetwork, int]:
    """An identity for each prefix, derived from the prefix (so a prefix keeps its number from one policy
    revision to the next), moved on to the next free number in the rare case two collide."""
    taken: set[int] = set()
    out: dict[IPNetwork, int] = {}
    for prefix in sorted(set(prefixes), key=lambda p: (p.version, p.network_address.packed, p.prefixlen)):
        number = zlib.crc32(str(prefix).encode()) % _CIDR_IDENTITY_SPACE
        while number in taken:
            number = (number + 1) % _CIDR_IDENTITY_SPACE
        taken.add(number)
        out[prefix] = CIDR_IDENTITY_BASE + 1 + number
    return out


def inside(prefix: IPNetwork, outer: IPNetwork) -> bool:
    return prefix.version == outer.version and prefix.subnet_of(outer)  # type: ignore[arg-type]


def ipcache_additions(identities: Mapping[IPNetwork, int]) -> dict[IPNetwork, int]:
    """The ipcache entries for CIDR identities. The ipcache keys IPv4 as ::ffff:a.b.c.d, so an IPv6 prefix that
    covers ::ffff:0:0/96 (::/0, say) would also claim every IPv4 address: IPv4 then gets plain world unless a
    policy named an IPv4 prefix of its own there."""
    out = dict(identities)
    if any(p.version == 6 and _V4_MAPPED.subnet_of(p) for p in out) and _ALL_V4 not in out:
        out[_ALL_V4] = IDENTITY_WORLD
    return out


RESERVED_ENTITIES = {"host": {IDENTITY_HOST}, "remote-node": {IDENTITY_REMOTE_NODE}}
