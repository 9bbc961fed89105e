"""Write services, and the refusal a read-only listener gives them: one rule for the agent and the relay.

Some of flowscope's services change a node (Control: policy and settings; Tracer: packet-path sessions make the
datapath follow packets). Whoever merely reaches a read-only port (Hubble's 4244 on an agent, 4245 on a relay)
may watch flows, never that: such a service is served only where the caller is known, on a unix socket
guarded by file permissions (`guard`) or on a listener that demands a client certificate (mutual TLS). A gRPC
server serves every service it has on every port, so a server with a read-only listener leaves the write
services out and answers their methods with PERMISSION_DENIED saying where they live, instead of gRPC's bare
"Method not found!", which reads like an old agent.
"""

from __future__ import annotations

import grp
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from flowscope.common.tls import ServerTLS


@dataclass(frozen=True)
class Service:
    """One gRPC service of a server: its full name, how to add it to a server, and whether it writes.

    A service writes unless it says it does not: one that forgets is kept off the public port, not exposed."""

    name: str
    add: Callable[[grpc.Server], None]
    writes: bool = True


def mutual(tls: ServerTLS | None) -> bool:
    """Whether a TLS listener knows every caller: it demands a client certificate one of its CAs signed."""
    return tls is not None and bool(tls.client_cas)


class Refusal(grpc.GenericRpcHandler):
    """On a read-only listener, a write service's methods end in PERMISSION_DENIED saying where it is served
    (`where`, e.g. "the agent's unix socket /run/flowscope/hubble.sock or :4246 (mutual TLS)")."""

    def __init__(self, writes: Sequence[Service], where: str) -> None:
        self._prefixes = tuple(f"/{service.name}/" for service in writes)
        self._where = where

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if not method.startswith(self._prefixes):
            return None
        service = method.split("/")[1]
        message = f"{service} is not served on this read-only port; it is served on {self._where}"

        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
            raise AssertionError("context.abort raises")

        # A unary handler answers a streaming call as well: the client sends one request either way.
        return grpc.unary_unary_rpc_method_handler(refuse)


SOCKET_GROUP = "flowscope"  # who may use a unix socket besides root, when the group exists
SOCKET_MODE = 0o660


def claim(socket_path: Path) -> None:
    """Make room for a unix socket: remove one a dead server left; OSError when a live server answers on it."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(socket_path))
        except OSError:
            socket_path.unlink(missing_ok=True)
            return
    raise OSError(f"another server listens on {socket_path}")


def guard(socket_path: Path) -> None:
    """Root and the `flowscope` group (when it exists) may call through the socket; nobody else."""
    os.chmod(socket_path, SOCKET_MODE)
    try:
        group = grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return
    os.chown(socket_path, -1, group)
