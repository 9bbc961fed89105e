"""Services on a real veth: a pod asks a ClusterIP, the datapath on its host-side interface sends the request
to a backend (a server in the node's namespace) and the reply comes back from the ClusterIP; TCP (curl) and UDP
(a socket that checks the reply's source)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from dp_netns import VethPair, inside, run

from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.lbmaps import TCP, UDP, Backend, Frontend

pytestmark = pytest.mark.bpf

CLUSTER_IP, BACKEND_PORT = "10.96.0.10", 9000

HTTP_SERVER = f"""
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served by the backend\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("", {BACKEND_PORT}), Handler)
print("ready", flush=True)
server.serve_forever()
"""

UDP_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", {BACKEND_PORT}))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    s.sendto(b"echo " + data, peer)
"""

UDP_CLIENT = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hi", ("{CLUSTER_IP}", 53))
data, peer = s.recvfrom(100)
print(data.decode(), peer[0], peer[1])
"""


@contextmanager
def server(netns: str, argv: list[str], ready: str) -> Iterator[None]:
    """A server in `netns`, up once it printed `ready`; killed at the end."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is listening (or died: then it is empty)
        assert ready in line, f"server said {line!r}"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_pod_reaches_a_cluster_ip_and_hears_back_from_it(veth: VethPair) -> None:
    run("ip", "route", "add", "10.96.0.0/16", "via", veth.node_v4, netns=veth.pod)
    backend = Backend(veth.node_v4, BACKEND_PORT)
    with inside(veth.node), Datapath() as dp:
        dp.attach_endpoint(veth.host_if, ep_id=1001, identity=50001)
        dp.lb.replace(
            [
                Frontend(1, CLUSTER_IP, 80, TCP, False, (backend,)),
                Frontend(2, CLUSTER_IP, 53, UDP, False, (backend,)),
            ]
        )
        http = ["python3", "-u", "-c", HTTP_SERVER]
        with server(veth.node, http, "ready"):
            got = run("curl", "-sS", "--max-time", "5", f"http://{CLUSTER_IP}/", netns=veth.pod)
            assert got.stdout == "served by the backend\n"
        with server(veth.node, ["python3", "-u", "-c", UDP_SERVER], "ready"):
            got = run("python3", "-c", UDP_CLIENT, netns=veth.pod)
            assert got.stdout == f"echo hi {CLUSTER_IP} 53\n"  # the reply's source is the ClusterIP
        clients = {(e.client, e.protocol, e.frontend_id) for e in dp.lb.reverse_entries()}
        assert clients == {(veth.pod_v4, TCP, 1), (veth.pod_v4, UDP, 2)}
        dp.lb.replace([])
