"""The real `flowscope` command against a real agent: every output format, follow, status and list.

The flows are a UDP exchange of known shape (three datagrams and their echoes, from a fixed port), so every
format can be checked line by line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import run_in, wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.observer.metadata import identity_of

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
SPORT = 43001
UDP_CLIENT = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.bind(("0.0.0.0", int(sys.argv[2])))
    for i in range(3):
        s.sendto(b"datagram %d" % i, (sys.argv[1], 9001))
        assert s.recv(100) == b"datagram %d" % i
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-cli") as lab:
        lab.up(traffic=False, agent=True)
        run_in(lab, "client", UDP_CLIENT, lab.pod("server").ipv4, str(SPORT))
        wait_for_flows(lab, [flow_pb2.FlowFilter(source_port=[str(SPORT)])], lambda fl: len(fl) >= 6)
        yield lab


def flowscope(lab: Lab, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    server = f"unix://{lab.agent_socket('node1')}"
    return subprocess.run(
        [FLOWSCOPE, *args, "--server", server], capture_output=True, text=True, timeout=timeout, check=False
    )


def observe(lab: Lab, *args: str) -> list[str]:
    done = flowscope(lab, "observe", "--port", str(SPORT), "--last", "100", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def identity(lab: Lab, pod: str) -> int:
    p = lab.pod(pod)
    return identity_of({**p.labels, "io.kubernetes.pod.namespace": p.namespace})


def test_compact(lab: Lab) -> None:
    lines = observe(lab, "-o", "compact")
    assert len(lines) == 12  # six packets, each leaving one pod and entering the other
    client = f"default/client:{SPORT} (ID:{identity(lab, 'client')})"
    server = f"default/server:9001 (ID:{identity(lab, 'server')})"
    forth, back = f"{client} -> {server}", f"{client} <- {server}"  # replies swap the ends back
    expected = []
    for _ in range(3):
        expected += [
            f"{forth} from-endpoint FORWARDED (UDP)",
            f"{forth} to-endpoint FORWARDED (UDP)",
            f"{back} from-endpoint FORWARDED (UDP)",
            f"{back} to-endpoint FORWARDED (UDP)",
        ]
    assert [line.split(": ", 1)[1] for line in lines] == expected


def test_print_node_name(lab: Lab) -> None:
    lines = observe(lab, "--print-node-name")
    assert all(" [node1]: " in line for line in lines)


def test_json_and_jsonpb(lab: Lab) -> None:
    for fmt in ("json", "jsonpb"):
        objects = [json.loads(line) for line in observe(lab, "-o", fmt)]
        assert len(objects) == 12
        assert {o["node_name"] for o in objects} == {"node1"}
        udp = [o["flow"]["l4"]["UDP"] for o in objects]
        assert {(u["source_port"], u["destination_port"]) for u in udp} == {(SPORT, 9001), (9001, SPORT)}
        points = [o["flow"]["trace_observation_point"] for o in objects[:4]]
        assert points == ["FROM_ENDPOINT", "TO_ENDPOINT", "FROM_ENDPOINT", "TO_ENDPOINT"]


def test_dict(lab: Lab) -> None:
    text = "\n".join(observe(lab, "-o", "dict"))
    assert text.count("SOURCE: default/client") == 6
    assert text.count("DESTINATION: default/server:9001") == 6
    assert "VERDICT: FORWARDED" in text
    assert "TYPE: from-endpoint" in text


def test_table(lab: Lab) -> None:
    lines = observe(lab, "-o", "table")
    assert lines[0].split() == ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    assert len(lines) == 13
    assert all("FORWARDED" in line and "UDP" in line for line in lines[1:])


def test_follow_streams_new_flows(lab: Lab) -> None:
    server = f"unix://{lab.agent_socket('node1')}"
    sport = SPORT + 1
    proc = subprocess.Popen(
        [FLOWSCOPE, "observe", "--server", server, "-f", "--port", str(sport)], stdout=subprocess.PIPE, text=True
    )
    # The exchange is made again until its lines come, rather than after a guessed time for the stream to open
    # (an exchange before that is not followed). A sender that gives up (30 s, or an exchange failed) ends the
    # command, so the read ends too, with what came.
    read = threading.Event()

    def exchange_until_read() -> None:
        deadline = time.monotonic() + 30
        try:
            while not read.is_set() and time.monotonic() < deadline:
                run_in(lab, "client", UDP_CLIENT, lab.pod("server").ipv4, str(sport))
        finally:
            if not read.is_set():
                proc.terminate()

    sender = threading.Thread(target=exchange_until_read, daemon=True)
    try:
        sender.start()
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(12)]
        read.set()
        assert all(f":{sport} " in line and "FORWARDED (UDP)" in line for line in lines)
    finally:
        read.set()
        sender.join(timeout=60)
        proc.terminate()
        proc.wait(timeout=10)


def test_status_and_lists(lab: Lab) -> None:
    status = flowscope(lab, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"Healthcheck (via unix://{lab.agent_socket('node1')}): Ok"
    assert "Current/Max Flows: " in status.stdout and "/65,535 " in status.stdout
    nodes = flowscope(lab, "list", "nodes")
    assert nodes.returncode == 0
    assert nodes.stdout.splitlines()[1].split()[:2] == ["node1", "Connected"]
    namespaces = flowscope(lab, "list", "namespaces")
    assert namespaces.stdout.split()[1:] == ["default", "kube-system", "web"]


def test_bad_filter_is_one_line_and_non_zero(lab: Lab) -> None:
    done = flowscope(lab, "observe", "--ip", "10.0.0.0/33")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "10.0.0.0/33" in done.stderr


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [FLOWSCOPE, "observe", "--server", f"unix://{tmp_path}/nothing.sock", "--timeout", "1s"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nothing.sock" in done.stderr
