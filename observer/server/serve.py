"""The agent's gRPC server: Hubble's Observer API and the standard health service, on a unix socket and TCP.

The `hubble` CLI checks grpc.health.v1 with service name "hubble.server.Observer" before anything else, so the
health service answers SERVING for it (and for the empty name, the server as a whole).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.api.observer import observer_pb2_grpc
from flowscope.common.tls import ServerTLS
from flowscope.observer.server.service import ObserverService
from flowscope.observer.server.state import NodeState

HEALTH_SERVICE = "hubble.server.Observer"
MAX_STREAMS = 64
# A relay pings each agent once a second to find out a node that stopped answering (relay/dial.py), also
# while a follow stream is idle; a gRPC server's default policy answers that with GOAWAY, ending the stream.
PING_POLICY: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),  # 0: never GOAWAY for pings
]


class ObserverServer:
    def __init__(
        self,
        state: NodeState,
        socket_path: Path | None,
        listen_address: str | None,
        tls: ServerTLS | None = None,
        extra_services: list[Callable[[grpc.Server], None]] | None = None,
    ) -> None:
        self._state = state
        self._socket_path = socket_path
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_STREAMS, thread_name_prefix="grpc"),
            maximum_concurrent_rpcs=MAX_STREAMS,
            options=PING_POLICY,
        )
        observer_pb2_grpc.add_ObserverServicer_to_server(ObserverService(state), self._server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for add in extra_services or []:
            add(self._server)
        if socket_path is not None:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
            # The unix socket is local and guarded by file permissions: no TLS on it, like Hubble's.
            self._server.add_insecure_port(f"unix://{socket_path}")
        if listen_address:
            address = _normalise(listen_address)
            if tls is not None:
                self._server.add_secure_port(address, tls.credentials())
            else:
                self._server.add_insecure_port(address)

    def start(self) -> None:
        self._server.start()
        if self._socket_path is not None:
            os.chmod(self._socket_path, 0o660)
        for name in (HEALTH_SERVICE, ""):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 1.0) -> None:
        """Stop accepting calls, end the streams, and remove the socket file."""
        self._health.enter_graceful_shutdown()
        self._state.stopping.set()
        self._state.ring.wake_all()
        self._server.stop(grace).wait(grace + 1)
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)


def _normalise(address: str) -> str:
    """':4244' means every address, as Hubble's --listen-address does."""
    return f"[::]{address}" if address.startswith(":") else address
