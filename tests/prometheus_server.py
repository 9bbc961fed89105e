"""A real Prometheus (Debian's `prometheus`) for a test: its own config and data folder, a loopback port,
scraping the given targets every second; stopped when the block ends, and killed with the test process even
by kill -9 (PR_SET_PDEATHSIG), so a killed run leaves no server behind (and the next one picks its own port).

It runs in a network namespace of the lab (a lab makes nothing in the root namespace, so only its own
namespaces reach its agents), and the test talks to it from inside that namespace too."""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import stopped

from flowscope.lab import netns

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy

CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: flowscope
    static_configs:
      - targets: [{targets}]
"""


@dataclass(frozen=True)
class Prometheus:
    url: str
    namespace: str | None = None  # the network namespace it listens in

    def _inside(self) -> AbstractContextManager[None]:
        return netns.inside(self.namespace) if self.namespace else nullcontext()

    def query(self, promql: str) -> list[dict[str, object]]:
        """The result vector of an instant query through the HTTP API (/api/v1/query)."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with self._inside(), DIRECT.open(address, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The value of a query answering one sample; None while it answers none."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def _free_port(namespace: str | None) -> int:
    with netns.inside(namespace) if namespace else nullcontext(), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prometheus(
    folder: Path, targets: Sequence[str], namespace: str | None = None, timeout: float = 60.0
) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is not installed: run scripts/setup")
    config = folder / "prometheus.yml"
    config.write_text(CONFIG.format(targets=", ".join(json.dumps(t) for t in targets)))
    port = _free_port(namespace)
    log = (folder / "prometheus.log").open("w")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = subprocess.Popen(
        netns.exec_argv(namespace, argv) if namespace else argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", namespace)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(server):
            assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield server
    finally:
        stopped(process)
        log.close()


def _ready(server: Prometheus) -> bool:
    try:
        with server._inside(), DIRECT.open(f"{server.url}/-/ready", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False
