"""Helpers for tests against a lab's real agent: flows through GetFlows, the control service, pods' sockets,
and the kernel's own packet counters to check flows against."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from waiting import polled

from flowscope.api.control import control_pb2, control_pb2_grpc
from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab, netns

PROJECT_PYTHON = sys.executable

# A TCP client with a fixed source port, so a test knows the 5-tuple: it sends `count` requests over one
# connection (the lab's echo server answers each), or, with "wait", one request and then one more per line
# on stdin, saying "ok" or "failed" for each.
TCP_CLIENT = """
import socket, sys
host, port, sport, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(2)
s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
try:
    s.connect((host, port))
except OSError as exc:
    print("connect failed:", exc, flush=True)
    sys.exit(1)
stream = s.makefile("rwb")
def ask(i):
    stream.write(b"request %d\\n" % i)
    stream.flush()
    try:
        return stream.readline() == b"ok request %d\\n" % i
    except OSError:
        return False
if count == "wait":
    print("ok" if ask(0) else "failed", flush=True)
    for i, _ in enumerate(sys.stdin, start=1):
        print("ok" if ask(i) else "failed", flush=True)
    sys.exit(0)
for i in range(int(count)):
    if not ask(i):
        print("failed at", i, flush=True)
        sys.exit(1)
s.close()
"""

UDP_CLIENT = """
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.bind(("", sport))
s.sendto(b"datagram", (host, port))
try:
    sys.exit(0 if s.recv(100) == b"datagram" else 1)
except OSError:
    sys.exit(1)
"""

# The lab's policy for the server: the client may reach its TCP echo port, the web pod's datagrams to its UDP
# echo port are denied (a rule of its own: the drops carry POLICY_DENY), everything else into it is dropped.
SERVER_IN_POLICY = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
    ingressDeny:
      - fromEndpoints: [{matchLabels: {app: web}}]
        toPorts: [{ports: [{port: "9001", protocol: UDP}]}]
"""

# Both directions of the client pod's flows (two filters: a flow matches either).
CLIENT_FLOWS = [
    flow_pb2.FlowFilter(source_pod=["default/client"]),
    flow_pb2.FlowFilter(destination_pod=["default/client"]),
]


def observer(lab: Lab) -> observer_pb2_grpc.ObserverStub:
    return observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}"))


def control(lab: Lab) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}"))


def set_config(lab: Lab, key: str, value: str) -> None:
    control(lab).SetConfig(control_pb2.SetConfigRequest(key=key, value=value), timeout=5)


def apply_policy(lab: Lab, text: str) -> control_pb2.PolicyStatus:
    return control(lab).ApplyPolicy(control_pb2.ApplyPolicyRequest(yaml=text, source="test"), timeout=10)


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def flows(lab: Lab, *whitelist: flow_pb2.FlowFilter, since: Timestamp | None = None) -> list[flow_pb2.Flow]:
    """Every stored flow (oldest first) matching any of the filters."""
    request = observer_pb2.GetFlowsRequest(whitelist=list(whitelist), since=since)
    return [r.flow for r in observer(lab).GetFlows(request, timeout=30) if r.HasField("flow")]


def connection(a_ip: str, a_port: int) -> list[flow_pb2.FlowFilter]:
    """Filters for both directions of the connections of one (address, port) end."""
    return [
        flow_pb2.FlowFilter(source_ip=[a_ip], source_port=[str(a_port)]),
        flow_pb2.FlowFilter(destination_ip=[a_ip], destination_port=[str(a_port)]),
    ]


def settle(
    lab: Lab, whitelist: list[flow_pb2.FlowFilter], done: Callable[[list[flow_pb2.Flow]], bool]
) -> list[flow_pb2.Flow]:
    """Flows once `done` says they are all there (the ingest loop stores events within tens of ms)."""
    return polled(lambda: flows(lab, *whitelist), done, timeout=10, every=0.2)


def run_python(lab: Lab, pod: str, script: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return lab.exec(pod, [PROJECT_PYTHON, "-c", script, *map(str, args)], check=False, timeout=timeout)


def ping_server(lab: Lab, count: int = 2, interval: float = 0.2) -> None:
    """Echo requests from the client to the server, each answered (ping fails the test otherwise)."""
    argv = ["ping", "-c", str(count), "-i", str(interval), "-W", "2", lab.pod("server").ipv4]
    lab.exec("client", argv)


def curl_web(lab: Lab) -> None:
    """One HTTP request from the client to the web pod: a whole TCP connection, whatever the answer."""
    url = f"http://{lab.pod('web').ipv4}/status/200"
    lab.exec("client", ["curl", "--silent", "--output", "/dev/null", "--max-time", "3", url], check=False)


@dataclass
class OpenConnection:
    """A client connection kept open in a pod, asked to send one more request at a time."""

    process: subprocess.Popen[str]

    def ask(self) -> str:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write("again\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()


@contextmanager
def open_connection(lab: Lab, pod: str, host: str, port: int, sport: int) -> Iterator[OpenConnection]:
    argv = netns.exec_argv(lab.netns(pod), [PROJECT_PYTHON, "-c", TCP_CLIENT, host, str(port), str(sport), "wait"])
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first == "ok", f"{pod} could not open its connection: {first!r}"
        yield OpenConnection(process)
    finally:
        process.kill()
        process.wait(timeout=5)


def veth_counters(lab: Lab, ifname: str) -> tuple[int, int]:
    """(packets, bytes) the node's side of a pod's veth transmitted: every packet into the pod."""
    base = f"/sys/class/net/{ifname}/statistics"
    out = lab.exec("node1", ["cat", f"{base}/tx_packets", f"{base}/tx_bytes"]).stdout.split()
    return int(out[0]), int(out[1])


def program_ids(lab: Lab, ifname: str) -> list[int]:
    """The ids of the BPF programs on a device's tcx hooks (ingress, then egress)."""
    found = [a for a in lab.attached_programs("node1") if a.device == ifname]
    return [a.prog_id for a in sorted(found, key=lambda a: a.direction != "ingress")]


NFT_TABLE = "fs_test_count"


@contextmanager
def connection_counters(lab: Lab, ip: str, port: int) -> Iterator[Callable[[], dict[str, tuple[int, int]]]]:
    """nftables counters on the node's forward path for both directions of the connections of one (ip, port)
    end: the kernel's own count of what the datapath's to-endpoint point must report. Yields a reader of
    {"out": (packets, bytes), "back": ...}; bytes as the tc hooks see them (L2: nft counts from L3 on)."""
    family = "ip6" if ":" in ip else "ip"
    script = f"""
table inet {NFT_TABLE} {{
  chain counting {{
    type filter hook forward priority -300; policy accept;
    {family} saddr {ip} tcp sport {port} counter comment "out"
    {family} daddr {ip} tcp dport {port} counter comment "back"
  }}
}}
"""
    lab.exec("node1", ["nft", "-f", "-"], input=script)

    def read() -> dict[str, tuple[int, int]]:
        listed = lab.exec("node1", ["nft", "-j", "list", "table", "inet", NFT_TABLE]).stdout
        found = {}
        for item in json.loads(listed)["nftables"]:
            rule = item.get("rule")
            if rule:
                counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
                found[rule["comment"]] = (counter["packets"], counter["bytes"] + 14 * counter["packets"])
        return found

    try:
        yield read
    finally:
        lab.exec("node1", ["nft", "delete", "table", "inet", NFT_TABLE], check=False)
