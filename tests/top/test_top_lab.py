"""`flowscope top` on a real agent: a one-node lab with traffic, its flows on the screen, a connection opened
on its latest flows, a packet-path session started on one with `s` (ended by itself, by Ctrl-C, by SIGTERM), `q`
to leave; and the table written once as an SVG."""

from __future__ import annotations

import os
import signal
import sys
import termios
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_runner import run_flowscope
from top_terminal import Terminal

from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

CLOSED_PORT = 9999  # nothing in the lab listens on it, or sends to it
SEND = "import socket,sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', (sys.argv[1], 9999))"


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


def test_enter_opens_a_connections_latest_flows(lab: Lab, terminal_for: Callable[..., Terminal]) -> None:
    term = terminal_for("--server", f"unix://{lab.agent_socket('node1')}", "--to-port", "9000", cols=160)
    term.wait_for(lambda text: "default/client" in text and "TCP/9000" in text, "the client's connection", timeout=30)
    term.type("\r")
    screen = term.wait_for(
        lambda text: "Enter/Esc close" in text and "trace: flowscope trace" in text and ":9000 (ID:" in text,
        "the opened connection's flows, as observe prints them",
    )
    title = next(line for line in screen.splitlines() if "trace: flowscope trace" in line)
    assert "TCP/9000" in title and "--to-port 9000" in title, screen
    flows = [line for line in screen.splitlines() if ":9000 (ID:" in line]
    assert all(" -> " in line or " <- " in line for line in flows), screen
    assert all("default/client:" in line and "default/server:9000" in line for line in flows), screen
    term.type("\x1b")
    term.wait_for(lambda text: "Enter/Esc close" not in text and "Enter flows" in text, "the flows closed")
    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()


def test_s_follows_the_selected_connections_packets_and_top_comes_back(
    lab: Lab, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", f"unix://{lab.agent_socket('node1')}", "--to-port", "9000", cols=160)
    term.wait_for(lambda text: "default/client" in text and "TCP/9000" in text, "the client's connection", timeout=30)
    term.type("s")
    # The screen steps aside: the session's command, each node's start line, then a tree per packet path as the
    # traffic's next packets reach their fate, and the end once --count packets were followed.
    term.wait_for(lambda text: "session ended · any key" in term.aside(), "the session's paths and its end", 60)
    session = term.aside()
    command = session.splitlines()[0]
    assert command.startswith("flowscope trace --protocol tcp --to-port 9000") and "default/client" in command
    assert "node1: session" in session and "tracing" in session, session
    assert "delivered to default/server" in session, session
    assert not termios.tcgetattr(term.slave)[3] & termios.ICANON  # keys again, for the one that goes back
    term.type("x")
    term.wait_for(
        lambda text: "TCP/9000" in text and "s trace" in text and "session ended" not in text, "top back on screen"
    )
    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()


def test_ctrl_c_ends_the_session_and_not_top(lab: Lab, terminal_for: Callable[..., Terminal]) -> None:
    term = terminal_for("--server", f"unix://{lab.agent_socket('node1')}", "--to-port", str(CLOSED_PORT), cols=160)
    lab.exec("client", [sys.executable, "-c", SEND, lab.pod("server").ipv4])
    term.wait_for(lambda text: f"UDP/{CLOSED_PORT}" in text and "NO_SOCKET" in text, "the datagram's drop", 30)
    term.type("s")  # nothing sends there again: the session would wait its 30 s for a packet
    term.wait_for(lambda text: "tracing" in term.aside(), "the session started")
    term.process.send_signal(signal.SIGINT)  # what Ctrl-C sends (the test's pty is not the controlling terminal)
    term.wait_for(lambda text: "session ended · any key" in term.aside(), "the session ended early")
    assert "no packet was picked" in term.aside() and term.process.poll() is None
    term.type(" ")
    term.wait_for(lambda text: f"UDP/{CLOSED_PORT}" in text and "s trace" in text, "top back on screen")
    term.type("s")
    term.wait_for(lambda text: "tracing" in term.aside(), "a second session started")
    term.process.send_signal(signal.SIGTERM)  # ends the session and top with it
    assert term.exit_code() == 130
    assert term.restored()


def test_once_writes_the_labs_table_as_an_svg(lab: Lab, env: dict[str, str], short_tmp: Path) -> None:
    picture = short_tmp / "top.svg"
    done = run_flowscope(
        "top", "--server", f"unix://{lab.agent_socket('node1')}", "--once", "--svg", str(picture), env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    root = ElementTree.parse(picture).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = "".join(root.itertext()).replace("\xa0", " ")
    rows = [line for line in text.splitlines() if "default/client" in line and "default/server" in line]
    assert any("TCP/9000" in row and "FORWARDED" in row for row in rows), text[-3000:]
    assert "nodes 1 seen in flows: node1" in text
