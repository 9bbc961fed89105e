"""Service ids: the small number that names a service frontend in the datapath's maps, its events and Hubble's
service agent events.

In Cilium a "service ID" names one frontend (address, port, protocol), not a Kubernetes Service: a Service with
a v4 and a v6 ClusterIP and two ports has four, and ServiceUpsertNotification carries one frontend each. The
datapath carries the id in its events (fs_event.rule, with FS_PF_XLATED), so it must stay the same while the
frontend exists; Cilium allocates it from a counter. Here it comes from the frontend itself (a CRC into
1..65535, probing on past a collision, the way identity_of derives identities from labels), so every node and
every restart agree without an allocator, and ids already given are kept while their frontend exists.

    ids = service_ids(cluster)                     # {(address, port, protocol): id}
    ids = service_ids(new_cluster, previous=ids)   # same ids for the frontends both have
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from flowscope.observer.metadata import Cluster

ID_MAX = 65535  # ids are 1..ID_MAX: 16 bits, 0 meaning "no service"

FrontendKey = tuple[str, int, int]  # ServiceFrontend.key: (address, port, IP protocol)


def service_ids(cluster: Cluster, previous: Mapping[FrontendKey, int] | None = None) -> dict[FrontendKey, int]:
    """An id for every frontend of the cluster's valid services, keeping those of `previous` that still exist."""
    keys = sorted({f.key for service in cluster.valid_services() for f in cluster.frontends(service)})
    kept = previous or {}
    ids = {key: kept[key] for key in keys if key in kept}
    taken = set(ids.values())
    for key in keys:
        if key in ids:
            continue
        number = _hash(key)
        while number in taken:
            number = number % ID_MAX + 1
        ids[key] = number
        taken.add(number)
    return ids


def _hash(key: FrontendKey) -> int:
    address, port, protocol = key
    return 1 + zlib.crc32(f"{address}|{port}|{protocol}".encode()) % ID_MAX
