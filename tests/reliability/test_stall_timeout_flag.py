"""`--stall-timeout` reaches the servers: a real `flowscope relay` process with `--stall-timeout 1s` ends the
stream of a client that reads nothing, and `flowscope agent`'s flag becomes its AgentConfig's (common/streams.py
says what the stalled client gets: the responses already sent, then CANCELLED)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from reliability_nodes import Node, Reader
from waiting import stopped, wait_for

from flowscope.cli import agent as agent_command
from flowscope.cli import relay as relay_command
from flowscope.cli.main import build_parser
from flowscope.common.streams import STALL_S

PROJECT = Path(__file__).resolve().parents[2]
FLOWSCOPE = [sys.executable, "-m", "flowscope.cli.main"]


class RelayProcess:
    """`flowscope relay` in a process of its own, its log read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*FLOWSCOPE, "relay", "--listen-address", "localhost:0", *args],
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)

    def stop(self) -> None:
        stopped(self.process, grace=15)
        self._reader.join(timeout=5)


@pytest.fixture
def node() -> Iterator[Node]:
    with Node("stall-flag", capacity=8191) as started:
        yield started


def test_a_relay_process_with_stall_timeout_1s_ends_a_client_that_reads_nothing(node: Node) -> None:
    relay = RelayProcess("--stall-timeout", "1s", "--peers", f"{node.name}={node.target}")
    channels: list[grpc.Channel] = []
    try:
        wait_for(lambda: relay.logged(r"relay serving on .* \(port (\d+)") is not None, timeout=30)
        served = relay.logged(r"relay serving on .* \(port (\d+)")
        assert served is not None
        target = f"localhost:{served.group(1)}"
        # A 64 KiB window that never grows: the stuck client's window fills after a few hundred flows.
        channels += [
            grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]),
            grpc.insecure_channel(target),
        ]
        stuck = Reader(channels[0], stuck=True)
        reader = Reader(channels[1])

        def flows_pass() -> bool:
            """Whether flows reach a client through the relay yet (it connects to the node on its own time)."""
            node.write(1)
            return reader.flows > 0

        wait_for(flows_pass, timeout=30)
        ended = r"read nothing for 1 s: its flow stream is ended"
        node.feed_until(lambda: relay.logged(ended) is not None, timeout=20)  # the default 30 s would not make it
        node.mark()
        wait_for(reader.marked.is_set, timeout=15)
        assert reader.error is None
        stuck.thread.start()  # it reads now: what it had been sent, then the end
        wait_for(stuck.ended.is_set, timeout=15)
        assert stuck.error is not None and stuck.error.code() == grpc.StatusCode.CANCELLED
        reader.close()
        stuck.close()
    finally:
        relay.stop()
        for channel in channels:
            channel.close()


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_the_flag_becomes_the_agents_and_the_relays_config() -> None:
    assert agent_command.config_from(parse("agent", "--stall-timeout", "1m30s"), None).stall_s == 90.0
    assert agent_command.config_from(parse("agent"), None).stall_s == STALL_S
    relay = ["relay", "--peers", "n=unix:///nowhere"]
    assert relay_command.config_from(parse(*relay, "--stall-timeout", "250ms")).stall_s == 0.25
    assert relay_command.config_from(parse(*relay)).stall_s == STALL_S


@pytest.mark.parametrize("command", ["agent", "relay"])
@pytest.mark.parametrize("value", ["0", "-1s", "soon", "5"])
def test_a_stall_timeout_that_is_no_positive_duration_is_refused(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(command, "--stall-timeout", value)
    assert "--stall-timeout" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["agent", "relay"])
def test_the_help_says_what_a_stalled_client_gets(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(command, "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "then CANCELLED" in text and "(30s)" in text
