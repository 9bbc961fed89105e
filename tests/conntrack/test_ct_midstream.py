"""A connection conntrack first sees mid-stream (opened before the agent started, with no tables left behind).

Its first packet seen may be the server's: nothing in a packet without SYN says which end opened the connection,
so the datapath must not guess. Its flows leave is_reply unset (as Hubble does when it does not know) instead of
calling the server's data the original direction and the client's the reply, which drew the connection turned
around in top and map: `default/server → default/client TCP/<the client's ephemeral port>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from integration.flows_helpers import wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

PORT = 7900

# The server speaks first, when the test writes a line; then it reads the client's answer and closes.
SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], int(sys.argv[2]))) as listener:
    print("ready", flush=True)
    conn, _ = listener.accept()
    with conn:
        sys.stdin.readline()
        conn.sendall(b"hello from the server\\n")
        print(conn.recv(100).decode().strip(), flush=True)
"""

# The client: connects, prints its port, answers the server's first line.
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60) as s:
    print(s.getsockname()[1], flush=True)
    s.recv(100)
    s.sendall(b"client answer\\n")
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-midstream") as lab:
        lab.up(traffic=False, agent=False)
        yield lab


def test_a_connection_seen_mid_stream_has_no_direction(lab: Lab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    in_server = ["ip", "netns", "exec", server.netns, sys.executable, "-c", SERVER, server.ipv4, str(PORT)]
    in_client = ["ip", "netns", "exec", client.netns, sys.executable, "-c", CLIENT, server.ipv4, str(PORT)]
    with subprocess.Popen(in_server, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as talking:
        try:
            assert talking.stdout is not None and talking.stdin is not None
            assert talking.stdout.readline().strip() == "ready"
            with subprocess.Popen(in_client, stdout=subprocess.PIPE, text=True) as asking:
                try:
                    assert asking.stdout is not None
                    client_port = int(asking.stdout.readline())  # connected before any agent ran
                    lab.start_agents()
                    talking.stdin.write("\n")
                    talking.stdin.flush()
                    assert talking.stdout.readline().strip() == "client answer"
                    assert asking.wait(timeout=30) == 0
                finally:
                    asking.kill()
            assert talking.wait(timeout=30) == 0
        finally:
            talking.kill()

    flows = wait_for_flows(
        lab,
        [flow_pb2.FlowFilter(source_port=[str(PORT)]), flow_pb2.FlowFilter(destination_port=[str(PORT)])],
        lambda f: any(x.l4.TCP.flags.FIN for x in f if x.IP.source == server.ipv4),
    )
    server_data = [f for f in flows if f.IP.source == server.ipv4 and f.l4.TCP.flags.PSH]
    client_data = [f for f in flows if f.IP.source == client.ipv4 and f.l4.TCP.flags.PSH]
    assert server_data and client_data
    assert all(f.l4.TCP.source_port == PORT for f in server_data)
    assert all(f.l4.TCP.destination_port == PORT and f.l4.TCP.source_port == client_port for f in client_data)
    assert [f for f in flows if f.HasField("is_reply")] == []
