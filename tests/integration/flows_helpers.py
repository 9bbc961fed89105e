"""Helpers for end-to-end tests: ask a real agent for flows, and capture the truth with tcpdump in a pod.

The truth a flow is checked against is what the pod itself saw on its interface (a pcap written by tcpdump):
every packet the pod sent must appear once as from-endpoint on its veth and once as to-endpoint on the peer's,
and every packet it received the other way round, in the same order.
"""

from __future__ import annotations

import ipaddress
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from waiting import polled

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def stub(lab: Lab, node: str = "node1") -> observer_pb2_grpc.ObserverStub:
    channel = grpc.insecure_channel(f"unix://{lab.agent_socket(node)}")
    return observer_pb2_grpc.ObserverStub(channel)


def get_flows(
    lab: Lab,
    whitelist: list[flow_pb2.FlowFilter] | None = None,
    blacklist: list[flow_pb2.FlowFilter] | None = None,
    node: str = "node1",
    number: int = 0,
    until: Timestamp | None = None,
) -> list[flow_pb2.Flow]:
    """Every stored flow matching the filters (or the last `number`), oldest first."""
    request = observer_pb2.GetFlowsRequest(
        number=number, whitelist=whitelist or [], blacklist=blacklist or [], until=until
    )
    return [r.flow for r in stub(lab, node).GetFlows(request, timeout=20) if r.HasField("flow")]


def wait_for_flows(
    lab: Lab,
    whitelist: list[flow_pb2.FlowFilter],
    done: Callable[[list[flow_pb2.Flow]], bool],
    timeout: float = 5.0,
    node: str = "node1",
) -> list[flow_pb2.Flow]:
    """Query until `done(flows)` holds (events reach the ring within tens of ms), or the timeout passes."""
    return polled(lambda: get_flows(lab, whitelist, node=node), done, timeout)


def flag_names(flags: flow_pb2.TCPFlags) -> frozenset[str]:
    return frozenset(name for name in TCP_FLAG_NAMES if getattr(flags, name))


@dataclass(frozen=True)
class Packet:
    """One packet as a pod's tcpdump saw it."""

    src: str
    dst: str
    proto: int
    sport: int = 0  # ICMP: type
    dport: int = 0  # ICMP: code
    tcp_flags: frozenset[str] = frozenset()


def _parse_l4(proto: int, l4: bytes) -> tuple[int, int, frozenset[str]]:
    if proto in (6, 17, 132) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        flags: frozenset[str] = frozenset()
        if proto == 6 and len(l4) >= 14:
            flags = frozenset(name for bit, name in enumerate(TCP_FLAG_NAMES) if l4[13] >> bit & 1)
        return sport, dport, flags
    if proto in (1, 58) and len(l4) >= 2:
        return l4[0], l4[1], frozenset()
    return 0, 0, frozenset()


def read_pcap(path: Path) -> list[Packet]:
    """The IP packets of a classic pcap file with Ethernet framing (what tcpdump -w writes)."""
    raw = path.read_bytes()
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos, packets = 24, []
    while pos + 16 <= len(raw):
        _, _, caplen, _ = struct.unpack(endian + "IIII", raw[pos : pos + 16])
        frame = raw[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0800:
            ihl = (frame[14] & 0x0F) * 4
            proto = frame[23]
            src, dst = ipaddress.ip_address(frame[26:30]), ipaddress.ip_address(frame[30:34])
            l4 = frame[14 + ihl :]
        elif ethertype == 0x86DD:
            proto = frame[20]
            src, dst = ipaddress.ip_address(frame[22:38]), ipaddress.ip_address(frame[38:54])
            l4 = frame[54:]
        else:
            continue
        sport, dport, flags = _parse_l4(proto, l4)
        packets.append(Packet(str(src), str(dst), proto, sport, dport, flags))
    return packets


def packet_of(flow: flow_pb2.Flow) -> Packet:
    """The packet a flow describes, in the terms read_pcap uses."""
    l4 = flow.l4
    kind = l4.WhichOneof("protocol")
    if kind == "TCP":
        return Packet(
            flow.IP.source,
            flow.IP.destination,
            6,
            l4.TCP.source_port,
            l4.TCP.destination_port,
            flag_names(l4.TCP.flags),
        )
    if kind == "UDP":
        return Packet(flow.IP.source, flow.IP.destination, 17, l4.UDP.source_port, l4.UDP.destination_port)
    if kind == "ICMPv4":
        return Packet(flow.IP.source, flow.IP.destination, 1, l4.ICMPv4.type, l4.ICMPv4.code)
    if kind == "ICMPv6":
        return Packet(flow.IP.source, flow.IP.destination, 58, l4.ICMPv6.type, l4.ICMPv6.code)
    return Packet(flow.IP.source, flow.IP.destination, 0)


@contextmanager
def capture(lab: Lab, pod: str, tcpdump_filter: str, folder: Path) -> Iterator[list[Packet]]:
    """tcpdump on a pod's eth0 for the block; the list is filled with its packets when the block ends."""
    pcap = folder / f"{pod}.pcap"
    argv = ["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-s", "256", "-w", str(pcap), tcpdump_filter]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns(pod), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    packets: list[Packet] = []
    try:
        assert proc.stderr is not None
        # tcpdump says "listening on eth0" once its socket is open: packets from then on are captured.
        line = proc.stderr.readline()
        assert "listening on" in line, line
        yield packets
        time.sleep(0.2)  # the last replies
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    packets.extend(read_pcap(pcap))


def run_in(lab: Lab, pod: str, script: str, *args: str, timeout: float = 30) -> str:
    """Run a Python snippet inside a pod (real sockets, the pod's own stack)."""
    import sys

    return lab.exec(pod, [sys.executable, "-c", script, *args], timeout=timeout).stdout
