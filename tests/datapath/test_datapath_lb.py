"""Services in the datapath (stage_lb, bpf/include/flowscope/lb.h) on crafted packets (BPF_PROG_TEST_RUN), with
frontends written through LbMaps: DNAT at from-container with exact output bytes and checksums checked here,
reverse NAT at to-container, the events' encoding, backend choice, and drops for a frontend without backends."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from dp_packets import ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, SYN, eth, ipv4, ipv6, tcp, udp
from dp_run import addr16

from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.c_source import header_define
from flowscope.observer.datapath.lbmaps import Backend, Frontend, validate
from flowscope.observer.datapath.testrun import TC_ACT_OK, TC_ACT_SHOT, prog_test_run

pytestmark = pytest.mark.bpf

OUT, IN = "from_container", "to_container"
CLIENT = {4: "10.0.1.5", 6: "fd00:1::5"}
CLUSTER_IP = {4: "10.96.0.10", 6: "fd96::10"}
BACKENDS = {4: ("10.0.2.1", "10.0.2.2", "10.0.2.3"), 6: ("fd00:2::1", "fd00:2::2", "fd00:2::3")}
ETHERTYPE = {4: ETH_P_IP, 6: ETH_P_IPV6}
FRONTEND_ID = 7
ETH_HLEN = 14
CSUM_OFF = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}


def frontend(family: int, proto: int, backends: int = 1, port: int = 80, target: int = 8080) -> Frontend:
    chosen = tuple(Backend(a, target) for a in BACKENDS[family][:backends])
    return Frontend(FRONTEND_ID, CLUSTER_IP[family], port, proto, False, chosen)


# checksums, computed here from scratch


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo(family: int, src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if family == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def _l3(family: int, packet: bytes) -> tuple[int, bytes, bytes, int]:
    """(L4 offset, source, destination, protocol) of an untagged frame."""
    if family == 4:
        ihl = (packet[ETH_HLEN] & 0x0F) * 4
        return ETH_HLEN + ihl, packet[ETH_HLEN + 12 : ETH_HLEN + 16], packet[ETH_HLEN + 16 : ETH_HLEN + 20], packet[23]
    return ETH_HLEN + 40, packet[ETH_HLEN + 8 : ETH_HLEN + 24], packet[ETH_HLEN + 24 : ETH_HLEN + 40], packet[20]


def with_checksums(family: int, packet: bytes) -> bytes:
    """The frame with a correct IPv4 header checksum and TCP/UDP checksum."""
    out = bytearray(packet)
    if family == 4:
        out[ETH_HLEN + 10 : ETH_HLEN + 12] = b"\0\0"
        out[ETH_HLEN + 10 : ETH_HLEN + 12] = struct.pack("!H", 0xFFFF - _sum16(bytes(out[ETH_HLEN : ETH_HLEN + 20])))
    l4, src, dst, proto = _l3(family, bytes(out))
    off = l4 + CSUM_OFF[proto]
    out[off : off + 2] = b"\0\0"
    csum = 0xFFFF - _sum16(_pseudo(family, src, dst, proto, len(out) - l4) + bytes(out[l4:]))
    out[off : off + 2] = struct.pack("!H", csum or 0xFFFF)
    return bytes(out)


def assert_checksums_valid(family: int, packet: bytes) -> None:
    if family == 4:
        assert _sum16(packet[ETH_HLEN : ETH_HLEN + 20]) == 0xFFFF, "IPv4 header checksum"
    l4, src, dst, proto = _l3(family, packet)
    assert _sum16(_pseudo(family, src, dst, proto, len(packet) - l4) + packet[l4:]) == 0xFFFF, "L4 checksum"


def frame(family: int, proto: int, src: str, sport: int, dst: str, dport: int) -> bytes:
    l4 = tcp(sport, dport, SYN, b"hello") if proto == IPPROTO_TCP else udp(sport, dport, b"hello")
    ip = ipv4(src, dst, proto, l4) if family == 4 else ipv6(src, dst, proto, l4)
    packet = eth(ETHERTYPE[family], ip)
    return with_checksums(family, packet)


def run(
    dp: Datapath, program: str, packet: bytes, verdict: int = TC_ACT_OK, debug: list | None = None
) -> tuple[bytes, list]:
    """The packet as the program left it, and the events it sent; its debug records (a new translation's) go to
    `debug`, when given."""
    result = prog_test_run(dp.program_fd(program), packet)
    assert result.retval == verdict
    records = list(dp.reader().read_batch(0))
    if debug is not None:
        debug.extend(r for r in records if int(r["type"]) == names.EVENT_DEBUG)
    return result.data_out, [r for r in records if int(r["type"]) != names.EVENT_DEBUG]


def checksum_fields(family: int, packet: bytes) -> list[tuple[int, bytes]]:
    l4, _, _, proto = _l3(family, packet)
    spans = [(l4 + CSUM_OFF[proto], 2)] + ([(ETH_HLEN + 10, 2)] if family == 4 else [])
    return [(off, packet[off : off + n]) for off, n in spans]


FAMILIES_PROTOS = [(4, IPPROTO_TCP), (4, IPPROTO_UDP), (6, IPPROTO_TCP), (6, IPPROTO_UDP)]


@pytest.mark.parametrize(("family", "proto"), FAMILIES_PROTOS)
def test_a_packet_to_a_cluster_ip_goes_to_the_backend_and_its_event_shows_the_cluster_ip(
    lb: Datapath, family: int, proto: int
) -> None:
    lb.lb.replace([frontend(family, proto)])
    sent = frame(family, proto, CLIENT[family], 40000, CLUSTER_IP[family], 80)
    out, events = run(lb, OUT, sent)

    assert out == frame(family, proto, CLIENT[family], 40000, BACKENDS[family][0], 8080)
    assert_checksums_valid(family, out)
    [event] = events
    assert int(event["type"]) == names.EVENT_TRACE and int(event["subtype"]) == names.TRACE_FROM_LXC
    assert bytes(event["daddr"]) == addr16(CLUSTER_IP[family]) and int(event["dport"]) == 80
    assert bytes(event["saddr"]) == addr16(CLIENT[family]) and int(event["sport"]) == 40000
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    # the capture is the packet as it entered, but for its checksums, which are the translated packet's
    captured = bytearray(sent)
    for off, value in checksum_fields(family, out):
        captured[off : off + len(value)] = value
    assert bytes(event["data"])[: len(sent)] == bytes(captured)
    [entry] = lb.lb.reverse_entries()
    assert (entry.client, entry.client_port, entry.backend) == (
        CLIENT[family],
        40000,
        Backend(BACKENDS[family][0], 8080),
    )
    assert (entry.frontend_address, entry.frontend_port, entry.frontend_id) == (CLUSTER_IP[family], 80, FRONTEND_ID)


@pytest.mark.parametrize(("family", "proto"), FAMILIES_PROTOS)
def test_the_reply_comes_from_the_cluster_ip_again(lb: Datapath, family: int, proto: int) -> None:
    lb.lb.replace([frontend(family, proto)])
    run(lb, OUT, frame(family, proto, CLIENT[family], 40000, CLUSTER_IP[family], 80))
    reply = frame(family, proto, BACKENDS[family][0], 8080, CLIENT[family], 40000)
    out, events = run(lb, IN, reply)

    assert out == frame(family, proto, CLUSTER_IP[family], 80, CLIENT[family], 40000)
    assert_checksums_valid(family, out)
    [event] = events
    assert int(event["subtype"]) == names.TRACE_TO_LXC
    assert bytes(event["saddr"]) == addr16(CLUSTER_IP[family]) and int(event["sport"]) == 80
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    assert int(event["trace_reason"]) == 3  # REPLY: the client's connection is the translated one
    assert bytes(event["data"])[: len(out)] == out


def test_a_udp_packet_without_checksum_keeps_none(lb: Datapath) -> None:
    lb.lb.replace([frontend(4, IPPROTO_UDP)])
    udp_csum = ETH_HLEN + 20 + 6
    sent = bytearray(frame(4, IPPROTO_UDP, CLIENT[4], 40000, CLUSTER_IP[4], 80))
    sent[udp_csum : udp_csum + 2] = b"\0\0"  # "no checksum"
    out, _ = run(lb, OUT, bytes(sent))
    assert out[udp_csum : udp_csum + 2] == b"\0\0"
    assert _sum16(out[ETH_HLEN : ETH_HLEN + 20]) == 0xFFFF
    assert out[ETH_HLEN + 16 : ETH_HLEN + 20] == ipaddress.ip_address(BACKENDS[4][0]).packed


def test_a_connection_stays_on_one_backend_and_connections_spread(lb: Datapath) -> None:
    lb.lb.replace([frontend(4, IPPROTO_TCP, backends=3)])
    chosen = {}
    for sport in range(41000, 41060):
        sent = frame(4, IPPROTO_TCP, CLIENT[4], sport, CLUSTER_IP[4], 80)
        first, _ = run(lb, OUT, sent)
        again, _ = run(lb, OUT, sent)
        assert again == first
        chosen[sport] = str(ipaddress.ip_address(first[ETH_HLEN + 16 : ETH_HLEN + 20]))
    assert set(chosen.values()) == set(BACKENDS[4])


def test_a_frontend_without_backends_drops(lb: Datapath) -> None:
    lb.lb.replace([frontend(4, IPPROTO_TCP, backends=0)])
    sent = frame(4, IPPROTO_TCP, CLIENT[4], 40000, CLUSTER_IP[4], 80)
    out, [event] = run(lb, OUT, sent, TC_ACT_SHOT)
    assert out == sent
    assert int(event["type"]) == names.EVENT_DROP
    assert int(event["drop_reason"]) == names.DROP_SERVICE_BACKEND_NOT_FOUND == 158
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    assert bytes(event["daddr"]) == addr16(CLUSTER_IP[4]) and int(event["dport"]) == 80
    assert lb.lb.reverse_entries() == []


@pytest.mark.parametrize("program", [OUT, IN])
def test_other_packets_are_untouched(lb: Datapath, program: str) -> None:
    lb.lb.replace([frontend(4, IPPROTO_TCP)])
    for sent in (
        frame(4, IPPROTO_TCP, CLIENT[4], 40000, CLUSTER_IP[4], 81),  # another port
        frame(4, IPPROTO_UDP, CLIENT[4], 40000, CLUSTER_IP[4], 80),  # another protocol
        frame(4, IPPROTO_TCP, CLIENT[4], 40000, "10.0.9.9", 80),  # another address
    ):
        out, [event] = run(lb, program, sent)
        assert out == sent
        assert int(event["policy_flags"]) == 0 and int(event["rule"]) == 0


def test_the_tables_are_replaced_whole(lb: Datapath) -> None:
    first = [frontend(4, IPPROTO_TCP, backends=2), Frontend(9, CLUSTER_IP[6], 53, IPPROTO_UDP, False, ())]
    lb.lb.replace(first)
    assert lb.lb.frontends() == first
    assert lb.maps.read_config().services_active == 1
    second = [frontend(4, IPPROTO_TCP, backends=3)]
    lb.lb.replace(second)
    assert lb.lb.frontends() == second
    lb.lb.replace([])
    assert lb.lb.frontends() == []
    assert lb.maps.read_config().services_active == 0


@pytest.mark.parametrize(
    ("frontends", "message"),
    [
        ([Frontend(0, "10.96.0.1", 80, 6, False, ())], "the id must be 1..65535"),
        ([Frontend(1, "10.96.0.1", 80, 1, False, ())], "the protocol must be"),
        ([Frontend(1, "10.96.0.1", 80, 6, False, (Backend("fd00::1", 80),))], "IP family"),
        ([Frontend(1, "10.96.0.1", 80, 132, False, (Backend("10.0.0.1", 81),))], "SCTP ports"),
        ([Frontend(1, "10.96.0.1", 80, 6, False, tuple(Backend("10.0.0.1", p) for p in range(1, 66)))], "at most 64"),
    ],
)
def test_what_the_datapath_cannot_serve_is_refused(frontends: list[Frontend], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(frontends)


def test_the_translated_flag_is_the_headers() -> None:
    assert names.XLATED_FLAG == header_define("lb.h", "FS_PF_XLATED")
