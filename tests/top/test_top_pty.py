"""`flowscope top` end to end: the real command in a pseudo-terminal, against the fake Observer server.

The test types keys into the terminal and reads the screen back (the last frame, escape codes stripped), and
checks the terminal settings are what they were once the command has gone, however it went.
"""

from __future__ import annotations

import signal
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cli_samples
import pytest
import top_samples
from cli_fake_server import FakeServer
from cli_runner import run_flowscope
from top_terminal import HOME, LEAVE_ALTERNATE_SCREEN, SHOW_CURSOR, Terminal

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2


class Feeder:
    """Pushes a mix of flows stamped now to the fake server every 20 ms, once a client follows."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        self.server.observer.following.wait(30)
        self.server.push(cli_samples.node_status(relay_pb2.NODE_CONNECTED, ("node-1", "node-2")))
        rounds = 0
        while not self.stop.is_set():
            now = time.time()
            for flow in (cli_samples.tcp_flow(), cli_samples.kernel_drop(), cli_samples.aggregated_flow()):
                self.server.push(top_samples.response(flow, now))
            if rounds % 25 == 0:
                self.server.push(cli_samples.lost_event())
            rounds += 1
            time.sleep(0.02)


@pytest.fixture
def feeding(server: FakeServer) -> Iterator[Feeder]:
    feeder = Feeder(server)
    yield feeder
    feeder.stop.set()


def test_rows_keys_live_filter_and_quit(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", server.target, "--from-pod", "default/client")
    # a frame reaches the pty in pieces: wait for its last lines (the footer's server) as well as the rows
    screen = term.wait_for(
        lambda text: "NO_SOCKET" in text and "TCP/80" in text and f"server {server.target}" in text, "the rows"
    )
    assert not termios.tcgetattr(term.slave)[3] & (termios.ECHO | termios.ICANON)  # keys, not lines, meanwhile
    assert f"server {server.target}" in screen
    assert "filter: --from-pod default/client" in screen
    assert "default/client" in screen and "default/server" in screen
    assert "UDP/9999  DROPPED   NO_SOCKET" in screen
    term.wait_for(lambda text: "nodes 2 connected" in text and "lost events 1" in text, "the footer")
    first = server.requests[0]
    assert first.follow and first.HasField("since") and list(first.whitelist[0].source_pod) == ["default/client"]

    term.type("d")
    term.wait_for(lambda text: "sort: drops" in text and "VERDICT▼" in text, "the drops sort")
    term.type("p")
    term.wait_for(lambda text: "PAUSED" in text, "the pause")
    term.type("p")

    term.type("/--verdict DROP")
    term.wait_for(lambda text: "✗ argument --verdict: invalid --verdict value: DROP" in text, "the filter error")
    term.type("\r")  # refused: the filter is wrong
    term.pump(0.5)
    assert len(server.requests) == 1
    term.type("PED\r")
    term.wait_for(lambda text: "filter: --from-pod default/client --verdict DROPPED" in text, "the new filter")
    deadline = time.monotonic() + 10
    while len(server.requests) < 2 and time.monotonic() < deadline:
        term.pump(0.05)
    second = server.requests[1]
    assert second.follow and second.HasField("since")
    assert list(second.whitelist[0].verdict) == [flow_pb2.DROPPED]
    assert list(second.whitelist[0].source_pod) == ["default/client"]
    term.wait_for(lambda text: "NO_SOCKET" in text, "rows from the new stream")

    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()
    assert term.text.endswith(SHOW_CURSOR + LEAVE_ALTERNATE_SCREEN)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupted_it_still_restores_the_terminal(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal], signum: int, code: int
) -> None:
    term = terminal_for("--server", server.target)
    term.wait_for(lambda text: "TCP/80" in text, "the rows")
    term.type("/--ip 10")  # in the middle of typing a filter
    term.wait_for(lambda text: "filter> --ip 10" in text, "the filter line")
    term.process.send_signal(signum)
    assert term.exit_code() == code
    assert term.restored()
    assert LEAVE_ALTERNATE_SCREEN in term.text.rsplit(HOME, 1)[-1]


def test_a_server_that_is_not_there_is_one_line_and_no_screen(
    short_tmp: Path, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", f"unix://{short_tmp}/nothing.sock")
    assert term.exit_code() == 1
    assert term.restored()
    assert term.text.strip() == f"flowscope: error: cannot connect to unix://{short_tmp}/nothing.sock (no such socket)"


def test_not_a_terminal(server: FakeServer, env: dict[str, str]) -> None:
    result = run_flowscope("top", "--server", server.target, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "flowscope: error: top needs a terminal for its screen and keys; for a stream of flows use 'observe -f'"
    ]
    assert not server.requests


def test_print_raw_filters_needs_no_terminal(env: dict[str, str]) -> None:
    result = run_flowscope("top", "--to-namespace", "web", "--print-raw-filters", env=env)
    assert result.returncode == 0
    assert result.stdout == 'allowlist:\n    - \'{"destination_pod":["web/"]}\'\n'


def test_a_broken_stream_is_named_and_resumed_with_observes_backoff(
    short_tmp: Path, server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    """Waits of 1, 2, 4 s while the server is away (observe -f's schedule, cli/observe/follow.py), each named in
    the footer; once the server answers again the schedule starts over."""
    term = terminal_for("--server", server.target)
    term.wait_for(lambda text: "TCP/80" in text, "the rows")
    server.stop()
    screen = term.wait_for(lambda text: "retrying in 1s" in text, "the broken stream in the footer")
    assert f"✗ retrying in 1s: lost the connection to {server.target}" in screen
    term.wait_for(lambda text: "retrying in 2s" in text, "a longer wait after the first retry failed")
    term.wait_for(lambda text: "retrying in 4s" in text, "a longer wait again")
    with FakeServer(short_tmp / "hubble.sock") as again:
        feeder = Feeder(again)
        try:
            # A whole frame (the help line ends it) with no error: the new stream's responses cleared it.
            term.wait_for(lambda text: "q quit" in text and "retrying" not in text, "the stream resumed")
        finally:
            feeder.stop.set()
        assert again.requests and not again.requests[0].HasField("since")  # new flows only: none counted twice
    screen = term.wait_for(lambda text: "retrying in 1s" in text, "the first wait again, after an answer")
    assert f"✗ retrying in 1s: lost the connection to {server.target}" in screen
    term.type("q")
    assert term.exit_code() == 0


REFUSAL = (
    "invalid cel_expression filter: cel_expression filters are not supported by flowscope, and this reason goes on"
    " long enough that one line of the narrowest footer could never hold all of it: END"
)


def _refuse_cel(request: observer_pb2.GetFlowsRequest) -> str | None:
    return REFUSAL if any(f.experimental.cel_expression for f in request.whitelist) else None


def _words(screen: str) -> str:
    return " ".join(screen.split())


def test_a_refused_filter_is_shown_whole_and_the_one_before_stays(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    server.observer.refuse = _refuse_cel
    term = terminal_for("--server", server.target, "--from-pod", "default/client", cols=80)
    term.wait_for(lambda text: "TCP/80" in text, "the rows")
    term.type("/--cel-expression true\r")
    screen = term.wait_for(lambda text: "END" in text, "the whole refusal")
    assert "the server refused '--from-pod default/client --cel-expression true': " in _words(screen)
    assert REFUSAL in _words(screen)
    assert "filter: --from-pod default/client" in screen and "retrying" not in screen
    term.wait_for(lambda text: "TCP/80" in text, "rows from the filter before")
    requests = server.requests
    assert len(requests) == 3 and _refuse_cel(requests[1]) and not _refuse_cel(requests[2])
    assert list(requests[2].whitelist[0].source_pod) == ["default/client"] and requests[2].HasField("since")
    term.type("q")
    assert term.exit_code() == 0


def test_a_refused_first_filter_is_never_retried(server: FakeServer, terminal_for: Callable[..., Terminal]) -> None:
    server.observer.refuse = _refuse_cel
    term = terminal_for("--server", server.target, "--cel-expression", "true")
    screen = term.wait_for(lambda text: "END" in text, "the whole refusal")
    assert REFUSAL in _words(screen) and "retrying" not in screen
    assert "filter: --cel-expression true" in screen  # kept, ready to edit with /
    term.type("q")
    assert term.exit_code() == 0
    assert len(server.requests) == 1


@pytest.mark.parametrize("flags", [["--protocol", "tpc"], ["--from-ip", "10.0.0.300"], ["--port", "70000"]])
def test_a_bad_filter_value_never_reaches_the_server(
    server: FakeServer, terminal_for: Callable[..., Terminal], flags: list[str]
) -> None:
    term = terminal_for("--server", server.target)
    term.wait_for(lambda text: "filter: none" in text, "the screen")
    term.type("/" + " ".join(flags))
    screen = term.wait_for(lambda text: "✗ argument " in text, "the filter error")
    assert f"✗ argument {flags[0]}: " in screen
    term.type("\r\x1b")  # Enter is refused, Esc leaves the editor
    term.type("q")
    assert term.exit_code() == 0
    assert len(server.requests) == 1 and not server.requests[0].whitelist


def test_at_80_columns_a_drop_keeps_its_reason_flows_and_age(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", server.target, "--verdict", "DROPPED", cols=80)
    screen = term.wait_for(lambda text: "NO_SOCKET" in text, "the drop reason")
    titles = next(line for line in screen.splitlines() if "SOURCE" in line).split()
    assert {"REASON", "FLOWS", "SEEN"} <= {title.rstrip("▼") for title in titles}
    term.type("q")
    assert term.exit_code() == 0
