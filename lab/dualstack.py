"""Threaded TCP and UDP servers on one IPv6 socket each that also accept IPv4 (as ::ffff:a.b.c.d).

The lab's servers answer on both address families from one socket per protocol, the way most real servers
are deployed, so one process serves both the IPv4 and the IPv6 traffic the lab generates.
"""

from __future__ import annotations

import http.server
import signal
import socket
import socketserver
import sys
import threading
from types import FrameType


def _report_error(server: socketserver.BaseServer, request: object, client_address: object) -> None:
    """One line per failed exchange (a client that reset or went quiet), not a traceback in the log."""
    print(f"{client_address}: {sys.exc_info()[1]!r}", flush=True)


class _DualStack(socketserver.TCPServer):
    """What the UDP and TCP servers share: one IPv6 socket that IPv4 clients reach too, and threads per exchange.

    Placed before the stdlib class, so these settings win over its defaults; it derives from TCPServer because the
    stdlib's UDPServer does too, so one base serves both protocols.
    """

    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    handle_error = _report_error

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class UDPServer(_DualStack, socketserver.ThreadingUDPServer):
    pass


class TCPServer(_DualStack, socketserver.ThreadingTCPServer):
    pass


class HTTPServer(_DualStack, http.server.ThreadingHTTPServer):
    pass


def serve_until_terminated(*servers: socketserver.BaseServer) -> None:
    """Serve on every server until SIGTERM or SIGINT, then return at once.

    The serving threads are daemon threads and the kernel closes their sockets when the process exits, so
    there is nothing to wait for (a graceful `shutdown()` would take up to half a second per server).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    stop.wait()


def client_socket(host: str, kind: socket.SocketKind, timeout: float) -> socket.socket:
    """A socket of the right family for a literal address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.settimeout(timeout)
    return sock
