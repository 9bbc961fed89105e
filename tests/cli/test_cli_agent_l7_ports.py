"""`flowscope agent --l7-ports`: the spec becomes the AgentConfig's ports, the agent's own default when not given,
and a bad spec stops the command with one line that says what is wrong."""

from __future__ import annotations

import subprocess
import sys

from flowscope.cli import agent as agent_command
from flowscope.cli.main import build_parser
from flowscope.common.l7_ports import L7Port
from flowscope.observer.agent import AgentConfig


def config(*flags: str) -> AgentConfig:
    return agent_command.config_from(build_parser().parse_args(["agent", *flags]), None)


def test_the_flag_defaults_to_the_agents_ports() -> None:
    assert config().l7_ports == AgentConfig(node_name="n").l7_ports
    assert L7Port("udp", 53, "dns", 512) in config().l7_ports


def test_the_flag_sets_the_ports_or_none() -> None:
    assert config("--l7-ports", "tcp/8000=http:256").l7_ports == (L7Port("tcp", 8000, "http", 256),)
    assert config("--l7-ports", "none").l7_ports == ()


def test_a_bad_spec_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowscope.cli.main", "agent", "--l7-ports", "udp/80=http"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--l7-ports: L7 port 'udp/80=http': http is captured over tcp only" in done.stderr
