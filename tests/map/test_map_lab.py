"""`flowscope map` on a real agent: a one-node lab with traffic, drawn in a pseudo-terminal and as pictures.

The live map must show the lab's client talking to its server (TCP/9000) and to the cluster DNS (UDP/53), turn
an edge red once the client sends to a port nobody listens on (the kernel drops those datagrams: NO_SOCKET),
draw the client's multicast datagrams (mDNS) and the pods' neighbour and router solicitations on the
`(multicast)` and `(link-local)` boxes rather than a box per address, and focus a node on Enter; `--once --svg`
must write an SVG that parses and shows the same edges (and no box per address), and `--dot` Graphviz text
naming them (and `--html`, and `--png` where rsvg-convert is installed, files of their kinds)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_runner import run_flowscope
from top_terminal import Terminal

from flowscope.cli.map import export
from flowscope.cli.map.controls import HELP
from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

CLOSED_PORT = 9999
MDNS = ("224.0.0.251", 5353)  # the client's multicast datagrams
ADDRESS_BOX = re.compile(r"\((fe80|ff0\d|224\.)[0-9a-f:.]*")  # a box named by a link's own address
SEND = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    while time.monotonic() < end:
        udp.sendto(b"nobody listens", (sys.argv[1], int(sys.argv[2])))
        time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-map") as lab:
        lab.up(traffic=True, agent=True)
        yield lab


def server(lab: Lab) -> str:
    return f"unix://{lab.agent_socket('node1')}"


def send_to_closed_port(lab: Lab, seconds: float) -> threading.Thread:
    """Datagrams from the client to the server pod's closed port, for `seconds`, in the background."""
    return send(lab, lab.topology.pod("server").ipv4, CLOSED_PORT, seconds)


def send(lab: Lab, address: str, port: int, seconds: float) -> threading.Thread:
    """Datagrams from the client to `address`:`port`, for `seconds`, in the background."""
    argv = [sys.executable, "-c", SEND, address, str(port), str(seconds)]
    thread = threading.Thread(target=lab.exec, args=("client", argv), kwargs={"timeout": seconds + 30}, daemon=True)
    thread.start()
    return thread


def test_the_live_map_shows_the_labs_edges_a_drop_in_red_and_a_focused_node(
    lab: Lab, map_terminal: Callable[..., Terminal]
) -> None:
    # Wide enough that every edge label stays whole (at 160 columns, when each link-local and multicast address
    # had a box of its own, "33% dropped" was cut to "33% dropp…" on a busy run).
    term = map_terminal("--server", server(lab), cols=220)
    term.wait_for(
        lambda text: all(word in text for word in ("client", "server", "TCP/9000", "UDP/53", "kube-dns")),
        "the client's edges to its server and to the DNS",
        timeout=40,
    )
    sender = send_to_closed_port(lab, 20)
    multicast = send(lab, *MDNS, 20)
    term.wait_for(lambda text: f"UDP/{CLOSED_PORT}" in text and "dropped" in text, "the edge to the closed port")
    term.wait_for(lambda text: f"UDP/{MDNS[1]}" in text and "(multicast)" in text, "the client's mDNS")
    frame = term.text.rsplit("\x1b[H", 1)[-1]
    assert not ADDRESS_BOX.search(frame), frame
    # rich's bold red (1;31) starts the run of text that holds the edge's label.
    assert re.search(rf"\x1b\[1;31m[^\x1b]*UDP/{CLOSED_PORT} [0-9.]+/s [0-9<]+% dropped", frame), frame
    # Walk the nodes until the client is selected, then focus it: its edges listed, and its latest flows. Each
    # step waits for a whole frame (its last line, the keys, drawn too), not one the map is still writing.
    for _ in range(30):
        term.type("\r")
        screen = term.wait_for(lambda text: "focus:" in text and HELP in text, "a focused node")
        if "focus: default/client" in screen:
            break
        term.type("\x1b")
        term.wait_for(lambda text: "focus:" not in text and HELP in text, "the whole map again")
        term.type("j")
    screen = term.wait_for(
        lambda text: "default/client → default/server  TCP/9000" in text and "latest flows" in text,
        "the client's edges and latest flows",
    )
    assert re.search(rf"default/client → default/server  UDP/{CLOSED_PORT} .*dropped", screen), screen
    term.type("\x1b")
    term.wait_for(lambda text: "focus:" not in text and "TCP/9000" in text, "the whole map after Esc")
    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()
    sender.join(timeout=60)
    multicast.join(timeout=60)


def test_once_writes_an_svg_and_graphviz_with_the_same_edges(lab: Lab, tmp_path: Path) -> None:
    term_free = ("--server", server(lab), "--once", "--width", "150")
    svg, dot, html, png = (tmp_path / f"map.{kind}" for kind in ("svg", "dot", "html", "png"))
    pictures = ["--svg", str(svg), "--dot", str(dot), "--html", str(html)]
    if shutil.which(export.PNG_CONVERTER):
        pictures += ["--png", str(png)]
    for _ in range(20):  # the lab's first seconds may not have every edge yet
        done = run_flowscope("map", *term_free, *pictures, timeout=60)
        assert done.returncode == 0, done.stderr
        if "TCP/9000" in dot.read_text() and "UDP/53" in dot.read_text():
            break
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = "".join(element.text or "" for element in root.iter("{http://www.w3.org/2000/svg}text"))
    text = text.replace("\xa0", " ")
    for words in ("client", "server", "TCP/9000", "UDP/53", "◆ kube-dns"):
        assert words in text, text
    assert not ADDRESS_BOX.search(text), text
    assert "TCP/9000" in html.read_text() and "<html" in html.read_text()
    if shutil.which(export.PNG_CONVERTER):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="(\S+) ', dot.read_text(), re.MULTILINE))
    assert ("default/client", "default/server", "TCP/9000") in edges
    assert ("default/client", "svc:kube-system/kube-dns", "UDP/53") in edges
    assert ("svc:kube-system/kube-dns", "kube-system/kube-dns", "UDP/53") in edges
