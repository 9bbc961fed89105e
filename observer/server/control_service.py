"""flowscope.control.Control: the agent's own gRPC service for what changes while it runs, the policy and the
monitor aggregation settings (proto/control/control.proto).

Errors a person can fix (a bad policy file, an unknown pod, a bad setting) come back as INVALID_ARGUMENT or
NOT_FOUND with the reason in one line; the CLI prints exactly that.
"""

from __future__ import annotations

import functools
from typing import cast

import grpc

from flowscope.api.control import control_pb2, control_pb2_grpc
from flowscope.observer.aggregation import Aggregation
from flowscope.observer.datapath.policymaps import EGRESS, INGRESS, Verdict
from flowscope.observer.policy import PolicyError, PolicyManager, Status
from flowscope.observer.server.connection_list import ConnectionSource, list_connections
from flowscope.observer.server.datapath_inventory import Read, get_datapath
from flowscope.observer.server.serve import Service

SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class ControlService(control_pb2_grpc.ControlServicer):
    def __init__(
        self, policy: PolicyManager, aggregation: Aggregation, inventory: Read, connections: ConnectionSource
    ) -> None:
        self._policy = policy
        self._aggregation = aggregation
        self._inventory = inventory
        self._connections = connections

    def ApplyPolicy(
        self, request: control_pb2.ApplyPolicyRequest, context: grpc.ServicerContext
    ) -> control_pb2.PolicyStatus:
        try:
            status = self._policy.apply(request.yaml, request.source)
        except PolicyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return self._status(status)

    def DeletePolicy(
        self, request: control_pb2.DeletePolicyRequest, context: grpc.ServicerContext
    ) -> control_pb2.PolicyStatus:
        try:
            status = self._policy.delete(tuple(request.names))
        except PolicyError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return self._status(status)

    def GetPolicy(
        self, request: control_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> control_pb2.PolicyStatus:
        return self._status(self._policy.status)

    def CheckPolicy(
        self, request: control_pb2.CheckPolicyRequest, context: grpc.ServicerContext
    ) -> control_pb2.CheckPolicyResponse:
        if request.protocol > 255 or request.port > 65535:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "protocol is 0-255 and port 0-65535")
        try:
            check = self._policy.check(request.source, request.destination, request.protocol, request.port)
        except (PolicyError, ValueError) as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        answer = check.answer
        name = self._policy.identity_name
        return control_pb2.CheckPolicyResponse(
            source_ip=check.source,
            destination_ip=check.destination,
            source_identity=answer.source_identity,
            destination_identity=answer.destination_identity,
            source=name(answer.source_identity),
            destination=name(answer.destination_identity),
            egress=self._verdict(answer.egress, name(answer.source_identity)),
            ingress=self._verdict(answer.ingress, name(answer.destination_identity)),
            allowed=answer.egress.allowed and answer.ingress.allowed,
            revision=self._policy.status.revision,
            node=self._policy.node_name,
            source_node=check.source_node,
            destination_node=check.destination_node,
        )

    def GetConfig(
        self, request: control_pb2.GetConfigRequest, context: grpc.ServicerContext
    ) -> control_pb2.ConfigResponse:
        return _settings(self._aggregation.settings.values())

    def SetConfig(
        self, request: control_pb2.SetConfigRequest, context: grpc.ServicerContext
    ) -> control_pb2.ConfigResponse:
        try:
            settings = self._aggregation.set(request.key, request.value)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return _settings(settings.values())

    def GetDatapath(
        self, request: control_pb2.GetDatapathRequest, context: grpc.ServicerContext
    ) -> control_pb2.DatapathInventory:
        return get_datapath(self._inventory, self._policy.node_name, request, context)

    def ListConnections(
        self, request: control_pb2.ListConnectionsRequest, context: grpc.ServicerContext
    ) -> control_pb2.ConnectionList:
        return list_connections(self._connections, request, context)

    def _verdict(self, verdict: Verdict, subject: str) -> control_pb2.Verdict:
        return control_pb2.Verdict(
            enforced=verdict.enforced,
            allowed=verdict.allowed,
            match_type=verdict.match_name if verdict.enforced else "",
            rule=(self._policy.rule_name(verdict.rule) or "") if verdict.rule else "",
            drop_reason=verdict.drop_reason,
            subject=subject,
        )

    def _status(self, status: Status) -> control_pb2.PolicyStatus:
        name = self._policy.identity_name
        compiled = status.compiled
        entries = [
            control_pb2.PolicyEntry(
                subject_identity=key.subject,
                subject=name(key.subject),
                direction=cast(control_pb2.Direction, key.direction),
                peer_identity=key.peer,
                peer=name(key.peer),
                protocol=key.proto,
                port=key.dport,
                deny=entry.deny,
                rule=entry.rule,
            )
            for key, entry in sorted(compiled.entries.items(), key=lambda item: item[0])
        ]
        enforced = [
            control_pb2.EnforcedSubject(
                identity=identity,
                subject=name(identity),
                ingress=bool(bits & INGRESS),
                egress=bool(bits & EGRESS),
            )
            for identity, bits in sorted(compiled.enforced.items())
        ]
        cidrs = [control_pb2.CIDRIdentity(cidr=str(p), identity=i) for p, i in compiled.ipcache.items()]
        return control_pb2.PolicyStatus(
            revision=status.revision,
            source=status.source,
            yaml=status.text,
            policies=[p.name for p in status.policies],
            entries=entries,
            enforced=enforced,
            cidr_identities=cidrs,
            unselected=compiled.unselected,
            node=self._policy.node_name,
        )


def _settings(values: dict[str, str]) -> control_pb2.ConfigResponse:
    return control_pb2.ConfigResponse(settings=[control_pb2.Setting(key=k, value=v) for k, v in values.items()])


def control_service(
    policy: PolicyManager, aggregation: Aggregation, inventory: Read, connections: ConnectionSource
) -> Service:
    """The service as ObserverServer takes it: it writes (it replaces the enforced policy, and switches kernel
    BPF statistics on for GetDatapath's window), so it is served on the agent's unix socket and control
    listener only."""
    service = ControlService(policy, aggregation, inventory, connections)
    return Service(SERVICE_NAME, functools.partial(control_pb2_grpc.add_ControlServicer_to_server, service))
