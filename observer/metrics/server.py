"""Serving /metrics: the handlers' and the agent's metrics in Prometheus' text format, on `--metrics-address`.

prometheus-client's own HTTP server, on a registry of the agent's (not the library's global one), in a thread
of its own: a scrape reads counters and never waits for the ingest thread. The address is written as the
agent's others are: ":9965" (every address, Hubble's port), "127.0.0.1:9965", "[::1]:9965".
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of "host:port", ":port" or "[v6]:port"; ValueError with the reason otherwise."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-address {address!r}: give HOST:PORT or :PORT (e.g. :9965)")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


class MetricsServer:
    """/metrics of `registry` on `address`, until close()."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        host, port = split_address(address)
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, host, registry=registry)
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
