"""`flowscope top` on a real agent: a one-node lab with traffic, its flows on the screen, `q` to leave."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from top_terminal import Terminal

from flowscope.lab import Lab

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-top") as lab:
        lab.up(traffic=True, agent=True)
        yield lab


def test_a_real_agents_connections(lab: Lab, terminal_for: Callable[..., Terminal]) -> None:
    term = terminal_for("--server", f"unix://{lab.agent_socket('node1')}")
    # The footer comes last in a frame: a busy machine can hand the pty a frame's rows before its footer.
    term.wait_for(
        lambda text: (
            "default/client" in text
            and "default/server" in text
            and "TCP/9000" in text
            and "nodes 1 seen in flows: node1" in text
        ),
        "the lab's client talking to its server, and the footer naming the node",
        timeout=30,
    )
    term.type("/--to-port 9000\r")
    screen = term.wait_for(lambda text: "filter: --to-port 9000" in text and "TCP/9000" in text, "the filtered rows")
    rows = [line for line in screen.splitlines() if "FORWARDED" in line or "DROPPED" in line]
    # Only port 9000 is left. (A row can read server → client with the client's port: a connection the agent
    # first saw mid-stream, from the server's side, has its directions the other way round in conntrack.)
    other_ports = (" TCP/80 ", " TCP/53 ", " UDP/53 ", " UDP/9001 ")
    assert rows and not [row for row in rows if any(port in row for port in other_ports)], screen
    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()
