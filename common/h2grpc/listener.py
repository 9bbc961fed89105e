"""Listening sockets from the addresses grpc takes: `unix:///path`, `unix:/path`, `host:port`, `[::]:port`,
`:port`; port 0 picks a free port.

No SO_REUSEPORT (grpcio sets it by default): a second server on a port in use fails to bind, instead of
sharing the port with the first and receiving half its clients. SO_REUSEADDR is set, as grpcio does, so a
restarted server binds at once while the old connections linger in TIME_WAIT.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from typing import Any

BACKLOG = 128


class BindError(RuntimeError):
    """The address cannot be listened on (in use, not an address of this host, a bad path)."""


def bind(address: str, reuse_port: bool = False) -> tuple[list[socket.socket], int]:
    """The listening sockets for `address` and the port they have (0 for a unix socket); `reuse_port` lets
    other sockets that ask for it bind the same port (SO_REUSEPORT)."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix://") if address.startswith("unix://") else address.removeprefix("unix:")
        _remove_socket_file(path)
        return [_listening(socket.AF_UNIX, path)], 0
    host, colon, port_text = address.rpartition(":")
    if not colon or not port_text.isdigit():
        raise BindError(f"{address!r} is not host:port")
    host = host.removeprefix("dns:///").removeprefix("[").removesuffix("]")
    port = int(port_text)
    if host in ("", "::", "0.0.0.0"):
        family = socket.AF_INET if host == "0.0.0.0" else socket.AF_INET6
        sock = _listening(family, ("0.0.0.0" if host == "0.0.0.0" else "::", port), reuse_port, dual_stack=True)
        return [sock], sock.getsockname()[1]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve {host!r}: {exc}") from None
    sockets: list[socket.socket] = []
    errors: list[str] = []
    for family, _, _, _, sockaddr in dict.fromkeys((i[0], i[1], i[2], i[3], i[4]) for i in infos):
        try:
            sock = _listening(family, (sockaddr[0], port, *sockaddr[2:]), reuse_port)
        except BindError as exc:
            errors.append(str(exc))
            continue
        sockets.append(sock)
        port = port or sock.getsockname()[1]  # the first picked a port: the others take the same
    if not sockets:
        raise BindError("; ".join(errors))
    return sockets, port


def _remove_socket_file(path: str) -> None:
    """A socket file left at `path` (by a server that was killed) is removed, as grpcio does before binding:
    whoever starts a server there owns the path. Anything else at the path stays, and the bind fails."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def _listening(
    family: socket.AddressFamily, where: str | tuple[Any, ...], reuse_port: bool = False, dual_stack: bool = False
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(where)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock
