"""Conversations of crafted packets between the test endpoint (loopback, EP_ID) and a peer, run through the
datapath with BPF_PROG_TEST_RUN: what each packet makes of the connection, and what events it emits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dp_packets import (
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    eth,
    icmp,
    ipv4,
    ipv6,
    tcp,
    udp,
)

from flowscope.observer.datapath import Datapath, RuntimeConfig
from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run

# flow.TraceReason
NEW, ESTABLISHED, REPLY, RELATED = 1, 2, 3, 4
# Cilium's monitor aggregation levels
NONE, LOWEST, LOW, MEDIUM, MAXIMUM = 0, 1, 2, 3, 4
SYN_FIN_RST = 0x07

POD4, PEER4 = "192.0.2.10", "198.51.100.20"
POD6, PEER6 = "2001:db8:a::10", "2001:db8:b::20"
OUT, IN = "from_container", "to_container"  # leaving the pod, entering it


def run(dp: Datapath, program: str, packet: bytes, verdict: int = TC_ACT_OK) -> np.ndarray:
    """Run one packet; it must get `verdict`. The events it made, in order."""
    result = prog_test_run(dp.program_fd(program), packet)
    assert result.retval == verdict, f"{program}: verdict {result.retval}, expected {verdict}"
    return dp.reader().read_batch(0)


def aggregate(dp: Datapath, level: int, interval_ms: int = 0, flags: int = SYN_FIN_RST, **rest: int) -> None:
    dp.maps.write_config(RuntimeConfig(aggregation=level, report_interval_ms=interval_ms, report_flags=flags, **rest))


@dataclass(frozen=True)
class Conversation:
    """Packets of one connection between the pod and the peer, either way."""

    proto: int
    pod_port: int = 40000
    peer_port: int = 80
    ipv6: bool = False

    def _ip(self, src: str, dst: str, payload: bytes) -> bytes:
        if self.ipv6:
            return eth(ETH_P_IPV6, ipv6(src, dst, self.proto, payload))
        return eth(ETH_P_IP, ipv4(src, dst, self.proto, payload))

    def _l4(self, sport: int, dport: int, flags: int, payload: bytes) -> bytes:
        if self.proto == IPPROTO_TCP:
            return tcp(sport, dport, flags, payload)
        if self.proto == IPPROTO_UDP:
            return udp(sport, dport, payload)
        raise ValueError(self.proto)

    @property
    def pod(self) -> str:
        return POD6 if self.ipv6 else POD4

    @property
    def peer(self) -> str:
        return PEER6 if self.ipv6 else PEER4

    def out(self, flags: int = 0, payload: bytes = b"") -> bytes:
        """A packet from the pod to the peer."""
        return self._ip(self.pod, self.peer, self._l4(self.pod_port, self.peer_port, flags, payload))

    def back(self, flags: int = 0, payload: bytes = b"") -> bytes:
        """A packet from the peer to the pod."""
        return self._ip(self.peer, self.pod, self._l4(self.peer_port, self.pod_port, flags, payload))


def echo(src: str, dst: str, type_: int, ident: int, seq: int = 1) -> bytes:
    """An ICMP (or ICMPv6, for IPv6 addresses) echo message."""
    rest = ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    if ":" in src:
        return eth(ETH_P_IPV6, ipv6(src, dst, IPPROTO_ICMPV6, icmp(type_, 0, rest)))
    return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_ICMP, icmp(type_, 0, rest)))


def unreachable(src: str, dst: str, quoted: bytes) -> bytes:
    """An ICMPv4 port unreachable from src to dst quoting `quoted` (an IPv4 packet without Ethernet)."""
    return eth(ETH_P_IP, ipv4(src, dst, IPPROTO_ICMP, icmp(3, 3, bytes(4) + quoted[:28])))


def column(events: np.ndarray, name: str) -> list[int]:
    return [int(x) for x in events[name]]
