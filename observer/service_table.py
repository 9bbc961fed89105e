"""The service frontends flows are named with: which service a frontend id stands for, and which frontend (if
any) an address, port and protocol are.

The datapath marks the events of a translated packet with the frontend's id (common/names.py XLATED_FLAG); the
decoder and the filters turn that id into the service's name and the frontend's address, and name a flow to or
from a frontend's address the way Hubble's service cache does when no id says it. The table is built with the
registry snapshot (observer/endpoints.py) whenever the cluster changes, with the ids of observer/service_ids.py
kept stable through the table before it. A frontend that goes keeps its id's entry (until the id is given to
another), so a translated flow recorded while it existed is still named: the ring is decoded long after the
packet. Only the frontends in force answer for an address.

Keys are 20 bytes, the way the record's header holds them: the address (16 bytes, IPv4 in the first 4), the
port big-endian, the IP protocol, the family (4 or 6). The same bytes come from one record (`key_of`) and from a
batch of records (a numpy view), so both paths find the same frontend.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.metadata import Cluster
from flowscope.observer.service_ids import FrontendKey, service_ids

KEY_DTYPE = np.dtype([("address", "V16"), ("port", ">u2"), ("protocol", "u1"), ("family", "u1")])


def key_of(address: bytes, port: int, protocol: int, ipv6: bool) -> bytes:
    """The lookup key of a 16-byte header address, a port (host order), an IP protocol and a family."""
    return address + port.to_bytes(2, "big") + bytes((protocol, 6 if ipv6 else 4))


@dataclass(frozen=True, eq=False)
class FrontendInfo:
    """One frontend as a flow names it: its service, and where the client sent the packet."""

    id: int
    namespace: str
    name: str
    address: str
    port: int
    protocol: int
    service: flow_pb2.Service  # ready-made: copied into each flow
    original: flow_pb2.FlowscopeAddress

    @property
    def key(self) -> bytes:
        ip = ipaddress.ip_address(self.address)
        return key_of(ip.packed.ljust(16, b"\0"), self.port, self.protocol, ip.version == 6)


@dataclass(frozen=True, eq=False)
class ServiceTable:
    """The frontends of one cluster metadata: `by_id` (also those gone since), `by_key` (those in force)."""

    ids: dict[FrontendKey, int] = field(default_factory=dict)  # service_ids' answer, to keep ids stable
    by_id: dict[int, FrontendInfo] = field(default_factory=dict)
    by_key: dict[bytes, FrontendInfo] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """Whether any flow can be named: the decoder asks nothing more of a cluster without services."""
        return bool(self.by_id)

    @cached_property
    def sorted_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys in force as a sorted "S20" array and the id of each: for a batch's `searchsorted`."""
        keys = np.array(list(self.by_key), dtype="S20")
        ids = np.array([info.id for info in self.by_key.values()], dtype=np.uint32)
        order = np.argsort(keys, kind="stable")
        return keys[order], ids[order]


def service_table(cluster: Cluster, previous: ServiceTable | None = None) -> ServiceTable:
    """The frontends of the cluster's valid services, ids kept from `previous`, its departed ids remembered."""
    before = previous or ServiceTable()
    ids = service_ids(cluster, before.ids)
    current: dict[int, FrontendInfo] = {}
    for service in cluster.valid_services():
        for frontend in cluster.frontends(service):
            address, port, protocol = frontend.key
            number = ids[frontend.key]
            current[number] = FrontendInfo(
                id=number,
                namespace=service.namespace,
                name=service.name,
                address=address,
                port=port,
                protocol=protocol,
                service=flow_pb2.Service(name=service.name, namespace=service.namespace),
                original=flow_pb2.FlowscopeAddress(ip=address, port=port),
            )
    return ServiceTable(
        ids=ids,
        by_id={**before.by_id, **current},
        by_key={info.key: info for info in current.values()},
    )
