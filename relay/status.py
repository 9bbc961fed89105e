"""ServerStatus, GetNodes and GetNamespaces for the whole cluster: ask every node at once, then add up.

Every node is asked at the same time, with a short timeout, so one slow or dead node costs the caller that
timeout at most, never the sum. A node that does not answer is unavailable (it cannot be reached) or in
error (it answered with an error); ServerStatus names at most MAX_UNAVAILABLE_NAMES of them, as Hubble's
relay does. The arithmetic is separate from the asking (`summarise`, `nodes`, `namespaces` take answers), so
it is tested without servers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.common import version
from flowscope.relay.pool import Connection

MAX_UNAVAILABLE_NAMES = 10
ASK_TIMEOUT_S = 2.0
# A node that cannot be reached; any other error means it answered, but wrongly.
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


VERSION = f"flowscope-relay {version.VERSION}"


@dataclass(frozen=True)
class Answer:
    """One node's reply to a call, or why there was none."""

    name: str
    address: str
    tls: bool
    server_name: str
    reply: Any = None  # the response message, when the call succeeded
    code: grpc.StatusCode | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.reply is not None

    @property
    def state(self) -> relay_pb2.NodeState:
        if self.ok:
            return relay_pb2.NODE_CONNECTED
        return relay_pb2.NODE_UNAVAILABLE if self.code in _UNREACHABLE else relay_pb2.NODE_ERROR


def ask_all(
    connections: list[Connection], call: Callable[[Connection, float], Any], timeout: float = ASK_TIMEOUT_S
) -> list[Answer]:
    """Make the same call on every node at once (call returns a grpc future); the answers in name order."""
    pending = [(c, call(c, timeout)) for c in connections]
    answers = []
    for connection, future in pending:
        peer = connection.peer
        answer = functools.partial(Answer, peer.name, peer.address, connection.tls, peer.server_name)
        try:
            answers.append(answer(reply=future.result()))
        except grpc.RpcError as exc:
            answers.append(answer(code=exc.code(), error=exc.details() or ""))
        except futures.CancelledError:
            answers.append(answer(code=grpc.StatusCode.CANCELLED))
    return sorted(answers, key=lambda a: a.name)


def server_status_of(connection: Connection, timeout: float) -> Any:
    return connection.stub.ServerStatus.future(observer_pb2.ServerStatusRequest(), timeout=timeout)


def namespaces_of(connection: Connection, timeout: float) -> Any:
    return connection.stub.GetNamespaces.future(observer_pb2.GetNamespacesRequest(), timeout=timeout)


L7_STATUS_FIELDS = tuple(field.name for field in observer_pb2.L7Status.DESCRIPTOR.fields)  # all sums


def summarise(
    answers: list[Answer], started_ns: int, own_exporters: Sequence[observer_pb2.ExporterStatus] = ()
) -> observer_pb2.ServerStatusResponse:
    """The cluster's ServerStatus: flow counts summed over the nodes that answered, the others named; every
    node's exporters, then the relay's own."""
    status = observer_pb2.ServerStatusResponse(uptime_ns=time.time_ns() - started_ns, version=VERSION)
    lost = status.flowscope_lost
    for answer in answers:
        if not answer.ok:
            continue
        node: observer_pb2.ServerStatusResponse = answer.reply
        status.num_flows += node.num_flows
        status.max_flows += node.max_flows
        status.seen_flows += node.seen_flows
        status.flows_rate += node.flows_rate
        lost.kernel_buffer += node.flowscope_lost.kernel_buffer
        lost.agent_queue += node.flowscope_lost.agent_queue
        lost.ring_overrun += node.flowscope_lost.ring_overrun
        lost.rate_limited += node.flowscope_lost.rate_limited
        l7, node_l7 = status.flowscope_l7, node.flowscope_l7
        for field in L7_STATUS_FIELDS:
            setattr(l7, field, getattr(l7, field) + getattr(node_l7, field))
        status.flowscope_exporters.extend(node.flowscope_exporters)
    status.flowscope_exporters.extend(own_exporters)
    missing = [a.name for a in answers if not a.ok]
    status.num_connected_nodes.CopyFrom(wrappers_pb2.UInt32Value(value=len(answers) - len(missing)))
    status.num_unavailable_nodes.CopyFrom(wrappers_pb2.UInt32Value(value=len(missing)))
    status.unavailable_nodes.extend(missing[:MAX_UNAVAILABLE_NAMES])
    return status


def nodes(answers: list[Answer]) -> observer_pb2.GetNodesResponse:
    """Each node as the relay sees it: its state, and its own figures when it answered ServerStatus."""
    response = observer_pb2.GetNodesResponse()
    for answer in answers:
        node = response.nodes.add(name=answer.name, address=answer.address, state=answer.state)
        node.tls.CopyFrom(observer_pb2.TLS(enabled=answer.tls, server_name=answer.server_name))
        if answer.ok:
            status: observer_pb2.ServerStatusResponse = answer.reply
            node.version = status.version
            node.uptime_ns = status.uptime_ns
            node.num_flows = status.num_flows
            node.max_flows = status.max_flows
            node.seen_flows = status.seen_flows
    return response


def namespaces(answers: list[Answer]) -> observer_pb2.GetNamespacesResponse:
    """Every namespace any node knows, once, sorted."""
    seen = {(ns.cluster, ns.namespace) for answer in answers if answer.ok for ns in answer.reply.namespaces}
    return observer_pb2.GetNamespacesResponse(
        namespaces=[observer_pb2.Namespace(cluster=c, namespace=n) for c, n in sorted(seen, key=lambda p: (p[1], p[0]))]
    )
