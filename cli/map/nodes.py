"""Which box of `flowscope map` a flow's endpoint is drawn as: a workload in its namespace, a service, or one
of the boxes that stand for what is not a pod (the world, the host, remote nodes).

A workload is what a person names when they draw their cluster on a whiteboard: by default its `app` label
(`k8s-app` for the cluster's own pods), so two replicas are one box; `--by pod` draws each pod, `--by identity`
each security identity (what policy sees). Services are boxes of their own: the entry their backends sit behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from flowscope.api.flow import flow_pb2
from flowscope.cli.top.grouping import clean
from flowscope.common import names

GROUPINGS = ("app", "pod", "identity")
APP_LABELS = ("app", "k8s-app", "app.kubernetes.io/name")  # the first present names the workload


class Node(NamedTuple):
    """One box: its namespace (empty for the world, host and remote nodes), its name, and its kind."""

    namespace: str
    name: str
    kind: str  # `workload`, `service`, or what stands alone: `world`, `host`, `remote-node`, `address`

    @property
    def label(self) -> str:
        """How the box reads: `client`, `◆ kube-dns` for a service, `(world)` for what stands alone."""
        if self.kind == "service":
            return f"◆ {self.name}"
        if self.namespace:
            return self.name
        return f"({self.name})"

    @property
    def full(self) -> str:
        """The name with its namespace, for lists and Graphviz: `default/client`, `svc:kube-system/kube-dns`."""
        name = f"{self.namespace}/{self.name}" if self.namespace else f"({self.name})"
        return f"svc:{name}" if self.kind == "service" else name


def _app(labels: Iterable[str]) -> str:
    found: dict[str, str] = {}
    for label in labels:
        key, _, value = label.partition("=")
        found[key.rpartition(":")[2]] = value  # `k8s:app=client` → app
    for key in APP_LABELS:
        if found.get(key):
            return found[key]
    return ""


def endpoint_node(endpoint: flow_pb2.Endpoint, address: str, by: str) -> Node:
    """The box of one end of a flow."""
    if endpoint.pod_name:
        namespace = clean(endpoint.namespace)
        if by == "pod":
            return Node(namespace, clean(endpoint.pod_name), "workload")
        if by == "identity":
            return Node(namespace, f"identity {endpoint.identity}", "workload")
        return Node(namespace, clean(_app(endpoint.labels) or endpoint.pod_name), "workload")
    reserved = names.RESERVED_IDENTITIES.get(endpoint.identity) if endpoint.identity else None
    if reserved in ("world-ipv4", "world-ipv6"):
        reserved = "world"
    if reserved:
        return Node("", reserved, reserved if reserved in ("world", "host", "remote-node") else "address")
    return Node("", clean(address) or "?", "address")


def service_node(service: flow_pb2.Service) -> Node:
    return Node(clean(service.namespace), clean(service.name), "service")
