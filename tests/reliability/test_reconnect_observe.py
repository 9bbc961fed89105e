"""`observe -f` outlives its server: the real command against a real gRPC server that goes away and comes back.

The client must name the outage on stderr, ask again with backoff, resume just after the last flow it printed
(no flow twice), and still end at once on Ctrl-C, also while it waits to retry.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # cli_fake_server, cli_samples, cli_runner

import cli_samples as samples
from cli_fake_server import FakeServer
from cli_runner import start_flowscope


def _lines(stream: IO[str] | None) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread so a test can wait for one with a timeout."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], text: str, timeout: float = 15) -> str:
    """The first line containing `text`, skipping others (waits for it, never for a fixed time)."""
    while True:
        line = lines.get(timeout=timeout)
        if text in line:
            return line


def _observe(short_tmp: Path, target: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "FLOWSCOPE_DEFAULT_SOCKET_PATH": str(short_tmp / "no-agent.sock")}
    return start_flowscope("observe", "--server", target, "--follow", env=env)


def test_a_lost_server_is_named_retried_and_followed_again_from_the_last_flow(short_tmp: Path) -> None:
    socket = short_tmp / "hubble.sock"
    server = FakeServer(socket).start()
    process = _observe(short_tmp, server.target)
    try:
        out, err = _lines(process.stdout), _lines(process.stderr)
        assert server.observer.following.wait(15)
        first = samples.tcp_flow(offset=1)
        server.push(samples.response(first))
        assert _until(out, "default/client").startswith("Jan  1 00:00:01.123")
        server.stop()
        assert "connection lost: lost the connection to" in _until(err, "retrying in 1s")
        with FakeServer(socket) as again:
            assert again.observer.following.wait(30), "the client never asked again"
            resumed = again.requests[0]
            assert resumed.follow and resumed.number == 0
            assert resumed.since.ToNanoseconds() == first.time.ToNanoseconds() + 1  # nothing shown twice
            again.push(samples.response(samples.tcp_flow(offset=2)))
            assert _until(out, "default/client").startswith("Jan  1 00:00:02.123")
            assert "restored; following again" in _until(err, "restored")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        server.stop()


def test_ctrl_c_ends_it_while_it_waits_to_retry(short_tmp: Path) -> None:
    server = FakeServer(short_tmp / "hubble.sock").start()
    process = _observe(short_tmp, server.target)
    try:
        err = _lines(process.stderr)
        assert server.observer.following.wait(15)
        server.stop()
        _until(err, "retrying in 1s")
        _until(err, "still unreachable")  # now in a longer wait
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
        server.stop()
