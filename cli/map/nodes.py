"""Which box of `flowscope map` a flow's endpoint is drawn as: a workload in its namespace, a service, or one
of the boxes that stand for what is not a pod (the world, the host, remote nodes).

A link's own housekeeping is not a conversation between workloads: IPv6 neighbour and router solicitations
from fe80:: addresses to ff02:: groups, IGMP and mDNS to 224.0.0.0/4, ARP (no IP at all). Hubble labels those
addresses reserved:world (nothing in the cluster owns them), so its UI draws them into the world's card; the
map gives them two boxes of their own instead, `(link-local)` (fe80::/10, 169.254.0.0/16, no address) and
`(multicast)` (ff00::/8, 224.0.0.0/4, 255.255.255.255), whatever the number of addresses: the world box keeps
meaning the world, and the link's chatter takes two boxes, not one per interface. A pod's end stays the pod's
(a pod's neighbour advertisement to fe80::1 is its edge to `(link-local)`).

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
LINK_LOCAL, MULTICAST = "link-local", "multicast"  # the boxes of a link's own traffic


class Node(NamedTuple):
    """One box: its namespace (empty for the world, host and remote nodes), its name, and its kind."""

    namespace: str
    name: str
    kind: str  # `workload`, `service`, or what stands alone: `world`, `host`, `remote-node`, `link-local`,
    # `multicast`, `address`

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


def link_scope(address: str) -> str:
    """`link-local` or `multicast` for an address of a link's own traffic (no address: ARP), else "". Read from
    the address's text as the agent and Hubble write it (lower case, shortest form): the world's addresses are
    many and each is read at every flow (graph.py remembers pods only), which parsing would make ~3 µs dearer."""
    if not address:
        return LINK_LOCAL
    if ":" in address:  # ff00::/8, fe80::/10: a first group of four digits
        group = address.partition(":")[0]
        if len(group) != 4:
            return ""
        if group.startswith("ff"):
            return MULTICAST
        return LINK_LOCAL if group[:3] in ("fe8", "fe9", "fea", "feb") else ""
    first, _, rest = address.partition(".")
    if 224 <= _octet(first) <= 239 or address == "255.255.255.255":
        return MULTICAST
    return LINK_LOCAL if first == "169" and rest.startswith("254.") else ""


def _octet(text: str) -> int:
    return int(text) if text.isdigit() and len(text) <= 3 else -1


def endpoint_node(endpoint: flow_pb2.Endpoint, address: str, by: str) -> Node:
    """The box of one end of a flow."""
    # A pod's end; or one the agent named by its identity alone (a pod's fe80:: address, which no registry lists):
    # its pod's namespace and labels, no pod name, so a box by pod cannot hold it.
    namespace = clean(endpoint.namespace)
    if namespace and by == "identity":
        return Node(namespace, f"identity {endpoint.identity}", "workload")
    workload = clean(endpoint.pod_name if by == "pod" else _app(endpoint.labels) or endpoint.pod_name)
    if namespace and workload:
        return Node(namespace, workload, "workload")
    scope = link_scope(address)
    if scope:
        return Node("", scope, scope)
    reserved = names.RESERVED_IDENTITIES.get(endpoint.identity) if endpoint.identity else None
    if reserved in ("world-ipv4", "world-ipv6"):
        reserved = "world"
    if reserved:
        return Node("", reserved, reserved if reserved in ("world", "host", "remote-node") else "address")
    return Node("", clean(address) or "?", "address")


def service_node(service: flow_pb2.Service) -> Node:
    return Node(clean(service.namespace), clean(service.name), "service")
