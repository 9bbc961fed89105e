"""ICMP and services in the datapath (lb.h) on crafted packets (BPF_PROG_TEST_RUN): an ICMP error about a
translated connection is translated back at the client's to-container (its quote names the frontend, the backend's
own error comes from the frontend, every checksum verified here from scratch), and ICMP echo to a ClusterIP passes
untouched, as in Cilium (services are L4)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from dp_packets import IPPROTO_UDP, eth, icmp, ipv4, ipv6
from dp_run import addr16
from test_datapath_lb import (
    BACKENDS,
    CLIENT,
    CLUSTER_IP,
    ETH_HLEN,
    ETHERTYPE,
    FRONTEND_ID,
    _sum16,
    frame,
    frontend,
    run,
)

from flowscope.common import names
from flowscope.observer.datapath import Datapath

pytestmark = pytest.mark.bpf

OUT, IN = "from_container", "to_container"
IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58
ICMP_PROTO = {4: IPPROTO_ICMP, 6: IPPROTO_ICMPV6}
PORT_UNREACHABLE = {4: (3, 3), 6: (1, 4)}
ECHO_REQUEST = {4: 8, 6: 128}
RELATED = 4  # trace_reason (Cilium's TRACE_REASON_CT_RELATED): an ICMP error about a known connection
ROUTER = {4: "10.0.9.1", 6: "fd00:9::1"}


def icmp_frame(family: int, src: str, dst: str, type_: int, code: int, rest: bytes) -> bytes:
    """An ICMP(v6) message with its checksums computed here (ICMPv6's covers the pseudo-header)."""
    body = bytearray(icmp(type_, code, rest))
    if family == 4:
        body[2:4] = struct.pack("!H", 0xFFFF - _sum16(bytes(body)))
        packet = bytearray(eth(ETHERTYPE[4], ipv4(src, dst, IPPROTO_ICMP, bytes(body))))
        packet[ETH_HLEN + 10 : ETH_HLEN + 12] = b"\0\0"
        packet[ETH_HLEN + 10 : ETH_HLEN + 12] = struct.pack(
            "!H", 0xFFFF - _sum16(bytes(packet[ETH_HLEN : ETH_HLEN + 20]))
        )
        return bytes(packet)
    packet = eth(ETHERTYPE[6], ipv6(src, dst, IPPROTO_ICMPV6, bytes(body)))
    pseudo = packet[ETH_HLEN + 8 : ETH_HLEN + 40] + struct.pack("!IxxxB", len(body), IPPROTO_ICMPV6)
    body[2:4] = struct.pack("!H", 0xFFFF - _sum16(pseudo + bytes(body)))
    return packet[: ETH_HLEN + 40] + bytes(body)


def port_unreachable(family: int, src: str, quoted: bytes) -> bytes:
    """`src`'s port unreachable to the client, quoting `quoted` (a frame) from its IP header on, as Linux does."""
    type_, code = PORT_UNREACHABLE[family]
    return icmp_frame(family, src, CLIENT[family], type_, code, b"\0\0\0\0" + quoted[ETH_HLEN:])


def assert_icmp_valid(family: int, packet: bytes, quotes: bool = True) -> None:
    if family == 4:
        assert _sum16(packet[ETH_HLEN : ETH_HLEN + 20]) == 0xFFFF, "IPv4 header checksum"
        assert _sum16(packet[ETH_HLEN + 20 :]) == 0xFFFF, "ICMP checksum"
        quote = ETH_HLEN + 28
        assert not quotes or _sum16(packet[quote : quote + 20]) == 0xFFFF, "the quoted IPv4 header's checksum"
        return
    body = packet[ETH_HLEN + 40 :]
    pseudo = packet[ETH_HLEN + 8 : ETH_HLEN + 40] + struct.pack("!IxxxB", len(body), IPPROTO_ICMPV6)
    assert _sum16(pseudo + body) == 0xFFFF, "ICMPv6 checksum"


def with_quote(family: int, packet: bytes, quote_of: bytes) -> bytes:
    """The error `packet`, its quoted UDP checksum that of `quote_of`'s (left as the backend saw it), and its own
    checksum recomputed."""
    udp_csum = (20 if family == 4 else 40) + 6
    quoted = bytearray(packet[ETH_HLEN:])
    l4 = 20 if family == 4 else 40
    quoted[l4 + 8 + udp_csum : l4 + 8 + udp_csum + 2] = quote_of[ETH_HLEN + udp_csum : ETH_HLEN + udp_csum + 2]
    body = bytes(quoted[l4:])
    src = packet[ETH_HLEN + 12 : ETH_HLEN + 16] if family == 4 else packet[ETH_HLEN + 8 : ETH_HLEN + 24]
    return icmp_frame(family, str(ipaddress.ip_address(src)), CLIENT[family], body[0], body[1], body[4:])


@pytest.mark.parametrize("family", [4, 6])
def test_a_backends_port_unreachable_names_the_cluster_ip(lb: Datapath, family: int) -> None:
    lb.lb.replace([frontend(family, IPPROTO_UDP)])
    sent, _ = run(lb, OUT, frame(family, IPPROTO_UDP, CLIENT[family], 40000, CLUSTER_IP[family], 80))
    backend = BACKENDS[family][0]
    error = port_unreachable(family, backend, sent)
    out, events = run(lb, IN, error)

    # what the client's kernel matches against its socket: the datagram it sent, to the ClusterIP
    asked = frame(family, IPPROTO_UDP, CLIENT[family], 40000, CLUSTER_IP[family], 80)
    expected = with_quote(family, port_unreachable(family, CLUSTER_IP[family], asked), sent)
    assert out == expected
    assert_icmp_valid(family, out)
    [event] = events
    assert int(event["subtype"]) == names.TRACE_TO_LXC
    assert bytes(event["saddr"]) == addr16(CLUSTER_IP[family])
    assert (int(event["sport"]), int(event["dport"])) == PORT_UNREACHABLE[family]
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    assert int(event["trace_reason"]) == RELATED  # conntrack found the client's connection to the backend
    assert bytes(event["data"])[: len(out)] == out


@pytest.mark.parametrize("family", [4, 6])
def test_a_routers_error_keeps_its_source_and_names_the_cluster_ip_in_its_quote(lb: Datapath, family: int) -> None:
    lb.lb.replace([frontend(family, IPPROTO_UDP)])
    sent, _ = run(lb, OUT, frame(family, IPPROTO_UDP, CLIENT[family], 40001, CLUSTER_IP[family], 80))
    out, [event] = run(lb, IN, port_unreachable(family, ROUTER[family], sent))

    asked = frame(family, IPPROTO_UDP, CLIENT[family], 40001, CLUSTER_IP[family], 80)
    assert out == with_quote(family, port_unreachable(family, ROUTER[family], asked), sent)
    assert_icmp_valid(family, out)
    assert bytes(event["saddr"]) == addr16(ROUTER[family])
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID


@pytest.mark.parametrize("family", [4, 6])
def test_an_error_about_an_untranslated_connection_is_untouched(lb: Datapath, family: int) -> None:
    lb.lb.replace([frontend(family, IPPROTO_UDP)])
    sent, _ = run(lb, OUT, frame(family, IPPROTO_UDP, CLIENT[family], 40002, BACKENDS[family][1], 8080))
    error = port_unreachable(family, BACKENDS[family][1], sent)
    out, [event] = run(lb, IN, error)
    assert out == error
    assert int(event["policy_flags"]) == 0 and int(event["rule"]) == 0


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("program", [OUT, IN])
def test_icmp_echo_to_a_cluster_ip_passes_untouched(lb: Datapath, family: int, program: str) -> None:
    """Services are L4: Cilium translates no ICMP echo to a ClusterIP (answering it is an opt-in proposal,
    cilium/cilium#47130), and neither does flowscope; the echo goes on as it is, checksums and all."""
    lb.lb.replace([frontend(family, IPPROTO_UDP)])
    src, dst = (CLIENT[family], CLUSTER_IP[family]) if program == OUT else (CLUSTER_IP[family], CLIENT[family])
    type_ = ECHO_REQUEST[family] if program == OUT else ECHO_REQUEST[family] + (1 if family == 6 else -8)
    echo = icmp_frame(family, src, dst, type_, 0, b"\x12\x34\x00\x01" + b"ping" * 8)
    assert_icmp_valid(family, echo, quotes=False)
    out, [event] = run(lb, program, echo)
    assert out == echo
    assert int(event["policy_flags"]) == 0 and int(event["rule"]) == 0
    assert bytes(event["daddr"]) == addr16(dst)
