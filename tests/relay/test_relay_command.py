"""`flowscope relay` as a command: it serves `flowscope observe` and `flowscope status`, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from relay_fakes import FakeAgent
from relay_samples import MS, flow

PROJECT = Path(__file__).resolve().parents[2]
FLOWSCOPE = [sys.executable, "-m", "flowscope.cli.main"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def flowscope(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSCOPE_")}
    return subprocess.run([*FLOWSCOPE, *args], capture_output=True, text=True, timeout=30, cwd=PROJECT, env=env)


def test_the_relay_command_serves_the_cli_and_stops_on_sigterm(short_tmp: Path) -> None:
    base = time.time_ns() - 5000 * MS
    n1, n2 = FakeAgent("node1", short_tmp / "n1.sock"), FakeAgent("node2", short_tmp / "n2.sock")
    n1.history = [flow("node1", base + 2 * i * MS, port=1000 + 2 * i) for i in range(3)]
    n2.history = [flow("node2", base + (2 * i + 1) * MS, port=1001 + 2 * i) for i in range(3)]
    n1.start()
    n2.start()
    port = free_port()
    relay = subprocess.Popen(
        [*FLOWSCOPE, "relay", "--listen-address", f"localhost:{port}", "--peers", f"node1={n1.target}",
         f"node2={n2.target}"],
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while (status := flowscope("status", "--server", f"localhost:{port}")).returncode != 0:
            assert time.monotonic() < deadline, status.stderr
            time.sleep(0.2)
        assert "Connected Nodes: 2/2" in status.stdout
        observed = flowscope("observe", "--server", f"localhost:{port}", "--last", "2", "-o", "json")
        assert observed.returncode == 0, observed.stderr
        lines = [line for line in observed.stdout.splitlines() if '"flow"' in line]
        assert [('"node1"' in line, '"node2"' in line) for line in lines] == [(True, False), (False, True)] * 2
        nodes = flowscope("list", "nodes", "--server", f"localhost:{port}")
        assert "node1" in nodes.stdout and "node2" in nodes.stdout and "Connected" in nodes.stdout
    finally:
        relay.send_signal(signal.SIGTERM)
        out, _ = relay.communicate(timeout=10)
        n1.stop()
        n2.stop()
    assert relay.returncode == 0, out
    assert "relay serving on" in out


def test_a_relay_that_cannot_listen_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = flowscope("relay", "--listen-address", f"127.0.0.1:{port}", "--peers", "a=unix:///nowhere")
    assert result.returncode != 0
    assert "cannot serve on" in result.stderr


def test_two_relays_never_share_a_port(short_tmp: Path) -> None:
    port = free_port()
    first = subprocess.Popen(
        [*FLOWSCOPE, "relay", "--listen-address", f"localhost:{port}", "--peers", "a=unix:///nowhere"],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while flowscope("status", "--server", f"localhost:{port}").returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = flowscope("relay", "--listen-address", f"localhost:{port}", "--peers", "a=unix:///nowhere")
        assert second.returncode != 0 and "cannot serve on" in second.stderr
    finally:
        first.terminate()
        first.wait(10)


def test_a_bad_listen_address_or_peer_is_one_line_at_start() -> None:
    """They used to leak a gRPC C-core log line before the error, or be accepted and fail later unexplained."""
    hint = "is not host:port (e.g. localhost:4245, 10.0.0.1:4244, [::1]:4244)"
    bad_listen = flowscope("relay", "--listen-address", "nonsense")
    assert (bad_listen.returncode, bad_listen.stderr) == (1, f"flowscope: error: relay: 'nonsense' {hint}\n")
    bad_peer = flowscope("relay", "--peers", "foo")
    assert bad_peer.returncode == 1
    assert bad_peer.stderr == (
        f"flowscope: error: relay: bad peer 'foo' ('foo' {hint}): write name=address, e.g. node1=10.77.0.1:4244\n"
    )
