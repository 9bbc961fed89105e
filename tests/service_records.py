"""Test helpers for flows of services: the lab cluster of tests/records.py with services in front of its pods,
and the records the datapath writes for the packets of a translated connection.

`default/web` (ClusterIP 10.96.0.10 / fd96::10, TCP 80) has the server pod behind it, `kube-system/kube-dns`
(10.96.0.53, UDP 53) the DNS pod, `default/web-np` (NodePort 30080 on every node, ClusterIP 10.96.0.80) the
server again, and `default/empty` (10.96.0.99, TCP 80) nothing. A translated packet's record carries
XLATED_FLAG in policy_flags and the frontend's id in rule, as bpf/include/flowscope/lb.h writes them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from records import LAB, lab_registry, record

from flowscope.common import names
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import Cluster, Service, ServicePort
from flowscope.observer.service_ids import service_ids

WEB_V4, WEB_V6, KUBE_DNS_V4, WEB_NP_V4, EMPTY_V4 = "10.96.0.10", "fd96::10", "10.96.0.53", "10.96.0.80", "10.96.0.99"

WEB = Service(
    name="web",
    namespace="default",
    cluster_ips=(WEB_V4, WEB_V6),
    ports=(ServicePort(name="http", port=80, target_port=80),),
    selector={"app": "server"},
)
KUBE_DNS = Service(
    name="kube-dns",
    namespace="kube-system",
    cluster_ips=(KUBE_DNS_V4,),
    ports=(ServicePort(name="dns", protocol="UDP", port=53, target_port=53),),
    selector={"k8s-app": "kube-dns"},
)
WEB_NP = Service(
    name="web-np",
    namespace="default",
    type="NodePort",
    cluster_ips=(WEB_NP_V4,),
    ports=(ServicePort(port=80, target_port=80, node_port=30080),),
    selector={"app": "server"},
)
EMPTY = Service(
    name="empty",
    namespace="default",
    cluster_ips=(EMPTY_V4,),
    ports=(ServicePort(port=80, target_port=80),),
    selector={"app": "nobody"},
)
SERVICES_LAB: Cluster = replace(LAB, services=(WEB, KUBE_DNS, WEB_NP, EMPTY))
IDS = service_ids(SERVICES_LAB)


def frontend_id(address: str, port: int, protocol: int = 6) -> int:
    """The id the agent gives a frontend of SERVICES_LAB."""
    return IDS[(address, port, protocol)]


def services_registry(node: str = "node1") -> EndpointRegistry:
    return lab_registry(node, SERVICES_LAB)


def translated(packet: bytes, frontend: int, **fields: int | bytes) -> np.ndarray:
    """The record of a packet of a translated connection: XLATED_FLAG and the frontend id (tests/records.record)."""
    return record(packet, policy_flags=names.XLATED_FLAG, rule=frontend, **fields)
