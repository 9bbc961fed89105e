"""Where a client stream connects, and the connected socket: a target as grpc spells it, TLS as the flags ask.

A stream of common/h2grpc/client.py has a connection of its own; this makes it, and says why not in gRPC's
words (UNAVAILABLE "failed to connect to all addresses; last error: ..."), so a client sees what grpcio would
have told it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from flowscope.common.h2grpc.stream_errors import StreamError
from flowscope.common.tls import ClientTLS, read_file


@dataclass(frozen=True)
class Address:
    """Where a target is: a unix socket path, or a host and port to resolve."""

    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def authority(self) -> str:
        if self.path:
            return "localhost"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(target: str) -> Address:
    """A target as grpc takes it: unix:///path, unix:path, host:port, [v6]:port, dns:///host:port, ipv4:a:p,
    ipv6:[a]:p; a host without port is port 443, as gRPC's default."""
    if target.startswith("unix:"):
        rest = target[len("unix:") :]
        path = "/" + rest.lstrip("/") if rest.startswith("//") else rest
        if not path:
            raise ValueError(f"{target!r} names no socket")
        return Address(path=path)
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":") or "443"
    elif target.count(":") == 1:
        host, _, port = target.partition(":")
    elif ":" in target:  # a bare IPv6 address
        host, port = target, "443"
    else:
        host, port = target, "443"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{target!r} has no valid port")
    return Address(host=host or "localhost", port=int(port))


def ssl_context(tls: ClientTLS, trust: bytes | None = None) -> ssl.SSLContext:
    """TLS as the client's flags ask: its CAs (or only `trust` when given, or the system's when neither), its
    certificate when it has one, HTTP/2 by ALPN, TLS 1.2 at least."""
    ca_what, cert_what, key_what = tls.described_as
    cas = b"".join(read_file(p, ca_what) for p in tls.server_cas)  # read even when unused: a bad file is named
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    roots = trust or cas
    if roots:
        context.load_verify_locations(cadata=roots.decode("ascii", "replace"))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert is not None and tls.key is not None:
        read_file(tls.cert, cert_what)
        read_file(tls.key, key_what)
        context.load_cert_chain(tls.cert, tls.key)
    context.set_alpn_protocols(["h2"])
    return context


def connect(
    address: Address,
    *,
    tls: ClientTLS | None,
    trust: bytes | None,
    server_name: str,
    timeout: float,
    deadline: float | None,
    opened: Callable[[socket.socket], None],
) -> socket.socket:
    """A connected socket (TLS done when asked; never on a unix socket), or a StreamError that says why not:
    DEADLINE_EXCEEDED when the call's `deadline` (monotonic) passed meanwhile, else UNAVAILABLE. `opened` gets
    a unix socket before it connects, so a cancel from another thread can shut it down."""
    if deadline is not None:
        timeout = min(timeout, max(0.001, deadline - time.monotonic()))
    where = f"unix:{address.path}" if address.path else address.authority
    try:
        if address.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            opened(sock)
            sock.settimeout(timeout)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((address.host, address.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except TimeoutError:
        late = deadline is not None and time.monotonic() >= deadline
        code = grpc.StatusCode.DEADLINE_EXCEEDED if late else grpc.StatusCode.UNAVAILABLE
        raise StreamError(code, f"failed to connect to all addresses; last error: {where}: timed out") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StreamError(
            grpc.StatusCode.UNAVAILABLE, f"failed to connect to all addresses; last error: {where}: {reason}"
        ) from None
    if tls is None or address.path:
        return sock
    try:
        context = ssl_context(tls, trust)
        secure = context.wrap_socket(sock, server_hostname=server_name or address.host)
    except (OSError, ValueError) as exc:
        sock.close()
        raise StreamError(
            grpc.StatusCode.UNAVAILABLE, f"failed to connect to all addresses; last error: {where}: {exc}"
        ) from None
    if secure.selected_alpn_protocol() != "h2":
        secure.close()
        raise StreamError(
            grpc.StatusCode.UNAVAILABLE,
            f"failed to connect to all addresses; last error: {where}: the server did not agree to HTTP/2",
        )
    return secure
