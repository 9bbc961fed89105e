"""The agent's own events, as Cilium's agent reports them over GetAgentEvents: it started, a policy was
applied or deleted, an endpoint of this node came or went, an ipcache entry was added, changed or removed, a
service frontend was added or changed, or removed.

They are kept in a ring of their own (observer/event_ring.py), apart from flows. The agent says when it started
and the policy manager when the policy changed; the cluster's endpoints and ipcache entries are followed by
comparing each cluster metadata with the one before (ClusterEvents, a metadata_watch subscriber), the way
ClusterIpcache keeps the datapath's ipcache equal to it. Services are reported per frontend under their service
id (observer/service_ids.py), as Cilium's service manager reports them; only the services in force count (a
service with errors is left out, see observer/services_check.py).

    events = AgentEvents()
    watcher.subscribe("agent events", ClusterEvents(events, node_name).update)
    events.started()
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable

from google.protobuf import wrappers_pb2

from flowscope.api.flow import flow_pb2
from flowscope.observer.event_ring import EventRing
from flowscope.observer.ipcache import Network, ipcache_entries
from flowscope.observer.metadata import Cluster, Endpoint, ServiceFrontend
from flowscope.observer.policy.manager import Status
from flowscope.observer.policy.model import Policy
from flowscope.observer.service_ids import FrontendKey, service_ids


def endpoint_labels(endpoint: Endpoint) -> list[str]:
    return sorted(f"k8s:{key}={value}" for key, value in endpoint.labels.items())


class AgentEvents:
    """The ring of agent events and the words for each kind of them."""

    def __init__(self, ring: EventRing[flow_pb2.AgentEvent] | None = None) -> None:
        self.ring: EventRing[flow_pb2.AgentEvent] = ring or EventRing()

    def started(self) -> None:
        now = time.time_ns()
        notification = flow_pb2.TimeNotification()
        notification.time.FromNanoseconds(now)
        self.ring.add(flow_pb2.AgentEvent(type=flow_pb2.AGENT_STARTED, agent_start=notification), now)

    def policy_changed(self, before: Status, after: Status) -> None:
        """A new revision from an apply or a delete: the policies now in force were updated (Cilium reports every
        import, changed or not) and those no longer in force were deleted."""
        kept = {policy.name for policy in after.policies}
        gone = [policy for policy in before.policies if policy.name not in kept]
        if gone:
            self._policy(flow_pb2.POLICY_DELETED, gone, after.revision)
        if after.policies:
            self._policy(flow_pb2.POLICY_UPDATED, after.policies, after.revision)

    def _policy(self, kind: flow_pb2.AgentEventType, policies: Iterable[Policy], revision: int) -> None:
        policies = list(policies)
        labels = [label for policy in policies for label in policy.labels]
        notification = flow_pb2.PolicyUpdateNotification(labels=labels, revision=revision, rule_count=len(policies))
        self.ring.add(flow_pb2.AgentEvent(type=kind, policy_update=notification))

    def endpoint(self, kind: flow_pb2.AgentEventType, endpoint: Endpoint) -> None:
        notification = flow_pb2.EndpointUpdateNotification(
            id=endpoint.id, labels=endpoint_labels(endpoint), pod_name=endpoint.pod, namespace=endpoint.namespace
        )
        self.ring.add(flow_pb2.AgentEvent(type=kind, endpoint_update=notification))

    def ipcache(self, kind: flow_pb2.AgentEventType, notification: flow_pb2.IPCacheNotification) -> None:
        self.ring.add(flow_pb2.AgentEvent(type=kind, ipcache_update=notification))

    def service_upserted(self, notification: flow_pb2.ServiceUpsertNotification) -> None:
        self.ring.add(flow_pb2.AgentEvent(type=flow_pb2.SERVICE_UPSERTED, service_upsert=notification))

    def service_deleted(self, service_id: int) -> None:
        notification = flow_pb2.ServiceDeleteNotification(id=service_id)
        self.ring.add(flow_pb2.AgentEvent(type=flow_pb2.SERVICE_DELETED, service_delete=notification))


class ClusterEvents:
    """Reports what each cluster metadata changed for this node: its endpoints, the ipcache's entries and the
    service frontends."""

    def __init__(self, events: AgentEvents, node_name: str) -> None:
        self._events = events
        self._node_name = node_name
        self._endpoints: dict[int, Endpoint] = {}
        self._ipcache: dict[Network, tuple[int, int]] = {}
        self._services: dict[FrontendKey, flow_pb2.ServiceUpsertNotification] = {}

    def update(self, cluster: Cluster) -> None:
        self._follow_endpoints(cluster)
        self._follow_ipcache(cluster)
        self._follow_services(cluster)

    def _follow_endpoints(self, cluster: Cluster) -> None:
        endpoints = {ep.id: ep for ep in cluster.endpoints if ep.node == self._node_name}
        for number, endpoint in self._endpoints.items():
            if number not in endpoints:
                self._events.endpoint(flow_pb2.ENDPOINT_DELETED, endpoint)
        for number, endpoint in endpoints.items():
            if number not in self._endpoints:
                self._events.endpoint(flow_pb2.ENDPOINT_CREATED, endpoint)
        self._endpoints = endpoints

    def _follow_ipcache(self, cluster: Cluster) -> None:
        entries = ipcache_entries(cluster, self._node_name)
        hosts = _host_ips(cluster)
        for network, (identity, _) in self._ipcache.items():
            if network not in entries:
                notification = flow_pb2.IPCacheNotification(cidr=str(network), identity=identity)
                self._events.ipcache(flow_pb2.IPCACHE_DELETED, notification)
        for network, (identity, _) in entries.items():
            before = self._ipcache.get(network)
            if before is not None and before[0] == identity:
                continue
            notification = flow_pb2.IPCacheNotification(cidr=str(network), identity=identity)
            if before is not None:
                notification.old_identity.CopyFrom(wrappers_pb2.UInt32Value(value=before[0]))
            host_ip, namespace, pod = hosts.get(network, ("", "", ""))
            notification.host_ip, notification.namespace, notification.pod_name = host_ip, namespace, pod
            self._events.ipcache(flow_pb2.IPCACHE_UPSERTED, notification)
        self._ipcache = entries

    def _follow_services(self, cluster: Cluster) -> None:
        """A frontend that went is deleted; one that came, or whose service or backends changed, is upserted."""
        ids = service_ids(cluster, {key: n.id for key, n in self._services.items()})
        frontends = [f for service in cluster.valid_services() for f in cluster.frontends(service)]
        services = {f.key: service_upsert(cluster, f, ids[f.key]) for f in frontends}
        for key, before in self._services.items():
            if key not in services:
                self._events.service_deleted(before.id)
        for key, notification in services.items():
            if self._services.get(key) != notification:
                self._events.service_upserted(notification)
        self._services = services


def service_upsert(cluster: Cluster, frontend: ServiceFrontend, service_id: int) -> flow_pb2.ServiceUpsertNotification:
    """A frontend as Cilium's ServiceUpsertNotification says it: both traffic policies are Cluster (the lab's
    services spread over every node's backends)."""
    service = frontend.service
    return flow_pb2.ServiceUpsertNotification(
        id=service_id,
        frontend_address=flow_pb2.ServiceUpsertNotificationAddr(ip=frontend.address, port=frontend.number),
        backend_addresses=[
            flow_pb2.ServiceUpsertNotificationAddr(ip=backend.address, port=backend.port)
            for backend in cluster.backends(frontend)
        ],
        type=service.type,
        name=service.name,
        namespace=service.namespace,
        ext_traffic_policy="Cluster",
        int_traffic_policy="Cluster",
    )


def _host_ips(cluster: Cluster) -> dict[Network, tuple[str, str, str]]:
    """Each pod address → (its node's address, its namespace, its pod), as Cilium's ipcache notes them."""
    nodes = {node.name: node.ipv4 or node.ipv6 for node in cluster.nodes}
    return {
        ipaddress.ip_network(ip): (nodes.get(ep.node, ""), ep.namespace, ep.pod)
        for ep in cluster.endpoints
        for ip in ep.ips
    }
