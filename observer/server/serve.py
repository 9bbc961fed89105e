"""The agent's gRPC servers: Hubble's Observer API, peer.Peer and the standard health service for anyone who
reaches a port, and flowscope's write services only where the caller is known.

Hubble's port 4244 carries only what reads (docs/reference/hubble-api.md: Observer, Peer; and health): whoever
reaches it may watch flows, never change the node. flowscope's write services (Control: the enforced policy and the
agent's settings) would let anyone who reaches the port switch enforcement off, so each service declares
whether it writes (`Service.writes`, true unless it says otherwise; common/write_side.py, which the relay
shares) and a write service is served only

- on the unix socket, where file permissions (0660, group `flowscope` when it exists) say who may call, and
- on the control listener, which the operator asks for by flag and which must demand a client certificate.

Two gRPC servers make the split, since a gRPC server serves every service it has on every port: the private
one (socket, control listener) has every service, the public one (the TCP listen address) only the read-only
ones, and answers a write method with PERMISSION_DENIED saying where the service lives.

The `hubble` CLI checks grpc.health.v1 with service name "hubble.server.Observer" before anything else, so the
health service answers SERVING for it (and for the empty name, the server as a whole).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.common.addresses import listen_target
from flowscope.common.h2grpc.server import Server
from flowscope.common.statuses import BriefStatuses
from flowscope.common.streams import STALL_S, FlowStreams
from flowscope.common.tls import ServerTLS
from flowscope.common.write_side import Refusal, Service, guard, mutual
from flowscope.observer.server.service import ObserverService, add_observer_service
from flowscope.observer.server.state import NodeState

HEALTH_SERVICE = "hubble.server.Observer"
CONTROL_FLAG = "--control-listen-address"


class ControlListenerError(ValueError):
    """A control listener without mutual TLS: anyone reaching it could change the node."""


def check_control_listener(address: str | None, tls: ServerTLS | None) -> None:
    """A control listener needs mutual TLS: a server certificate, and client CAs to check every caller by."""
    if address and not mutual(tls):
        raise ControlListenerError(
            f"{CONTROL_FLAG} needs mutual TLS: give --tls-cert-file, --tls-key-file and --tls-client-ca-files"
        )


class ObserverServer:
    def __init__(
        self,
        state: NodeState,
        socket_path: Path | None,
        listen_address: str | None,
        tls: ServerTLS | None = None,
        services: Sequence[Service] = (),
        control_address: str | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        check_control_listener(control_address, tls)
        self._state = state
        self._socket_path = socket_path
        self._health = health.HealthServicer()
        self.streams = FlowStreams(stall_s=stall_s)  # both servers' together (common/streams.py)
        observer = ObserverService(state, self.streams)
        read_only = [
            Service(HEALTH_SERVICE, self._add_health, writes=False),
            Service(
                "observer.Observer",
                functools.partial(add_observer_service, observer),
                False,
            ),
            *(s for s in services if not s.writes),
        ]
        writes = [s for s in services if s.writes]
        self._servers: list[grpc.Server] = []
        private = self._server([*read_only, *writes])
        if socket_path is not None:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
            # The unix socket is local and guarded by file permissions: no TLS on it, like Hubble's.
            private.add_insecure_port(f"unix://{socket_path}")
        if control_address and tls is not None:
            private.add_secure_port(listen_target(control_address), tls)
        if listen_address:
            public = self._server(read_only)
            public.add_generic_rpc_handlers((Refusal(writes, self._where_writes_live(control_address)),))
            address = listen_target(listen_address)
            if tls is not None:
                public.add_secure_port(address, tls)
            else:
                public.add_insecure_port(address)

    def _server(self, services: Sequence[Service]) -> grpc.Server:
        # common/h2grpc's server: a stream's flows leave in batches, not one gRPC send each; it answers the
        # relay's pings (once a second, also while a stream is idle) without ever sending GOAWAY for them.
        server = Server(
            self.streams.executor("grpc"),
            maximum_concurrent_rpcs=self.streams.max_rpcs,
            interceptors=[BriefStatuses()],
        )
        for service in services:
            service.add(server)
        self._servers.append(server)
        return server

    def _add_health(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

    def _where_writes_live(self, control_address: str | None) -> str:
        places = [f"the agent's unix socket {self._socket_path}"] if self._socket_path else []
        if control_address:
            places.append(f"{control_address} (mutual TLS)")
        return " or ".join(places) or f"no listener of this agent ({CONTROL_FLAG} serves it with mutual TLS)"

    def start(self) -> None:
        for server in self._servers:
            server.start()
        if self._socket_path is not None:
            guard(self._socket_path)
        for name in (HEALTH_SERVICE, ""):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls, end the streams, and remove the socket file."""
        self._health.enter_graceful_shutdown()
        self._state.stopping.set()
        self._state.ring.wake_all()
        stopped = [server.stop(grace) for server in self._servers]
        for event in stopped:
            event.wait(grace + 1)
        self.streams.close()
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)
