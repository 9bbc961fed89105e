"""The L7 capture (bpf/include/flowscope/l7.h): which packets go to the `l7_events` ring, with which header and
which bytes. Crafted packets through BPF_PROG_TEST_RUN (the identities and conntrack states each rule needs),
and real DNS-shaped datagrams from a pod on a veth at the agent's default aggregation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from dp_flows import IN, MEDIUM, NONE, OUT, PEER4, Conversation
from dp_netns import VethPair, inside, run
from dp_packets import ACK, FIN, IPPROTO_TCP, IPPROTO_UDP, PSH, SYN
from dp_run import EP_ID, EP_IDENTITY, LOOPBACK, addr16

from flowscope.common import names
from flowscope.common.l7_ports import DEFAULT_L7_PORTS, parse_l7_ports
from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath, DatapathConfig, RuntimeConfig
from flowscope.observer.datapath.policymaps import EGRESS
from flowscope.observer.datapath.testrun import TC_ACT_OK, TC_ACT_SHOT, prog_test_run

pytestmark = pytest.mark.bpf

EVENT_L7 = 129
L7_RING_PAGES = 1  # small enough to fill in a test
POD_PEER_IDENTITY = 6001  # a pod's identity (not reserved)
DNS_QUERY = bytes.fromhex("1234 0100 0001 0000 0000 0000") + b"\x03web\x03lab\x00\x00\x01\x00\x01"
HTTP_GET = b"GET /status/404 HTTP/1.1\r\nHost: web\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
CLIENT_HELLO = bytes.fromhex("160301004a") + bytes.fromhex("01000046") + bytes(70)


@pytest.fixture(scope="module")
def loaded() -> Iterator[Datapath]:
    with Datapath(DatapathConfig(ring_buffer_pages=64, l7_ring_buffer_pages=L7_RING_PAGES)) as datapath:
        yield datapath


@pytest.fixture
def dp(loaded: Datapath) -> Iterator[Datapath]:
    """The default L7 ports, loopback as endpoint EP_ID, no aggregation; both rings and conntrack empty."""
    configure(loaded, NONE)
    loaded.set_l7_ports(parse_l7_ports(DEFAULT_L7_PORTS))
    loaded.conntrack.clear()
    loaded.set_endpoint(LOOPBACK, EP_ID, EP_IDENTITY)
    drain(loaded)
    try:
        yield loaded
    finally:
        for ifindex in loaded.maps.endpoints():
            loaded.remove_endpoint(ifindex)
        loaded.replace_ipcache({})
        for generation in (0, 1):
            loaded.policy.clear_generation(generation)
        loaded.set_l7_ports(())
        configure(loaded, NONE)
        loaded.conntrack.clear()
        drain(loaded)


def configure(dp: Datapath, aggregation: int, **rest: int) -> None:
    """A whole runtime config (keeping the clock's conversion and the L7 switch)."""
    current = dp.maps.read_config()
    dp.maps.write_config(
        RuntimeConfig(
            aggregation=aggregation,
            report_flags=0x07,
            jiffy_ns=current.jiffy_ns,
            jiffies_offset_ns=current.jiffies_offset_ns,
            l7_active=current.l7_active,
            **rest,
        )
    )


def drain(dp: Datapath) -> None:
    dp.reader().read_batch(0)
    dp.l7_reader().read_batch(0)


def send(dp: Datapath, program: str, packet: bytes, verdict: int = TC_ACT_OK) -> tuple[np.ndarray, np.ndarray]:
    """Run one packet: (its events in the main ring, its records in the L7 ring)."""
    result = prog_test_run(dp.program_fd(program), packet)
    assert result.retval == verdict
    return dp.reader().read_batch(0), dp.l7_reader().read_batch(0)


def assert_l7_record(record: np.void, packet: bytes, point: int, caplen: int, type_: int = EVENT_L7) -> None:
    """The header of an L7 capture of `packet` at `point`, and its first bytes exactly."""
    assert int(record["type"]) == type_
    assert int(record["subtype"]) == point
    assert int(record["verdict"]) == names.VERDICT_FORWARDED
    assert int(record["ifindex"]) == LOOPBACK and int(record["ep_id"]) == EP_ID
    assert int(record["len_orig"]) == len(packet)
    assert int(record["len_cap"]) == min(len(packet), caplen)
    assert bytes(record["data"])[: int(record["len_cap"])] == packet[:caplen]
    assert int(record["packets"]) == 1 and int(record["bytes"]) == len(packet)
    assert int(record["src_names"]) == int(record["dst_names"]) == 0


@pytest.mark.parametrize("aggregation", [NONE, MEDIUM])
@pytest.mark.parametrize("ipv6", [False, True])
def test_a_dns_query_leaving_a_pod_is_captured_whatever_the_aggregation(
    dp: Datapath, ipv6: bool, aggregation: int
) -> None:
    configure(dp, aggregation)
    dns = Conversation(IPPROTO_UDP, pod_port=40053, peer_port=53, ipv6=ipv6)
    packet = dns.out(payload=DNS_QUERY)
    for attempt in range(3):  # again: medium silences the packet in the main ring, never in the L7 one
        events, records = send(dp, OUT, packet)
        assert len(records) == 1, attempt
        record = records[0]
        assert_l7_record(record, packet, names.TRACE_FROM_LXC, caplen=len(packet))
        assert bytes(record["saddr"]) == addr16(dns.pod) and bytes(record["daddr"]) == addr16(dns.peer)
        assert (int(record["sport"]), int(record["dport"]), int(record["l4_proto"])) == (40053, 53, IPPROTO_UDP)
        assert int(record["src_identity"]) == EP_IDENTITY
        assert int(record["dst_identity"]) == names.IDENTITY_WORLD
        assert bool(int(record["flags"]) & ev.F_IPV6) == ipv6
        assert len(events) == (1 if aggregation == NONE else 0)  # medium reports at to-* points only


def test_capture_stops_at_the_kinds_caplen(dp: Datapath) -> None:
    packet = Conversation(IPPROTO_UDP, peer_port=53).out(payload=DNS_QUERY + bytes(700))
    _, records = send(dp, OUT, packet)
    assert len(records) == 1
    assert_l7_record(records[0], packet, names.TRACE_FROM_LXC, caplen=14 + 20 + 8 + 512)


def test_ports_without_l7_and_switched_off_capture_nothing(dp: Datapath) -> None:
    events, records = send(dp, OUT, Conversation(IPPROTO_UDP, peer_port=9999).out(payload=DNS_QUERY))
    assert len(events) == 1 and len(records) == 0
    dp.set_l7_ports(())
    assert dp.maps.read_config().l7_active == 0
    events, records = send(dp, OUT, Conversation(IPPROTO_UDP, peer_port=53).out(payload=DNS_QUERY))
    assert len(events) == 1 and len(records) == 0


def test_http_segments_that_start_no_message_are_not_captured(dp: Datapath) -> None:
    http = Conversation(IPPROTO_TCP, peer_port=80)
    for payload in (b"body of a POST", b"\x00\x01binary", b"GET"):  # a body; binary; too short to be a request
        _, records = send(dp, OUT, http.out(PSH | ACK, payload))
        assert len(records) == 0, payload
    _, records = send(dp, OUT, http.out(ACK))  # no payload at all
    assert len(records) == 0
    packet = http.out(PSH | ACK, HTTP_GET)
    _, records = send(dp, OUT, packet)
    assert len(records) == 1
    assert_l7_record(records[0], packet, names.TRACE_FROM_LXC, caplen=len(packet))


def test_the_response_is_captured_where_its_client_is(dp: Datapath) -> None:
    http = Conversation(IPPROTO_TCP, peer_port=8080)
    send(dp, OUT, http.out(SYN))
    send(dp, IN, http.back(SYN | ACK))
    send(dp, OUT, http.out(PSH | ACK, HTTP_GET))
    response = http.back(PSH | ACK, HTTP_OK)
    _, records = send(dp, IN, response)
    assert len(records) == 1
    assert_l7_record(records[0], response, names.TRACE_TO_LXC, caplen=len(response))
    assert int(records[0]["flags"]) & (ev.F_REPLY | ev.F_REPLY_KNOWN) == ev.F_REPLY | ev.F_REPLY_KNOWN


def test_a_connection_seen_mid_stream_still_has_its_response_captured(dp: Datapath) -> None:
    """No SYN seen (the agent started after it opened): the flows carry no direction, but conntrack's guess,
    the first sender asked, still finds the server's port for the answer."""
    http = Conversation(IPPROTO_TCP, peer_port=8080)
    send(dp, OUT, http.out(PSH | ACK, HTTP_GET))
    response = http.back(PSH | ACK, HTTP_OK)
    _, records = send(dp, IN, response)
    assert len(records) == 1
    assert_l7_record(records[0], response, names.TRACE_TO_LXC, caplen=len(response))
    assert int(records[0]["flags"]) & (ev.F_REPLY | ev.F_REPLY_KNOWN) == 0


@pytest.mark.parametrize(("client_identity", "captured"), [(POD_PEER_IDENTITY, False), (names.IDENTITY_WORLD, True)])
def test_the_server_side_captures_only_for_a_client_that_is_no_pod(
    dp: Datapath, client_identity: int, captured: bool
) -> None:
    if client_identity != names.IDENTITY_WORLD:
        dp.replace_ipcache({f"{PEER4}/32": client_identity})
    # the pod is the server: the peer's request comes in (to-container), the pod's response goes out
    http = Conversation(IPPROTO_TCP, pod_port=80, peer_port=40000)
    send(dp, IN, http.back(SYN))
    send(dp, OUT, http.out(SYN | ACK))
    request, response = http.back(PSH | ACK, HTTP_GET), http.out(PSH | ACK, HTTP_OK)
    _, records = send(dp, IN, request)
    assert len(records) == int(captured)
    if captured:
        assert_l7_record(records[0], request, names.TRACE_TO_LXC, caplen=len(request))
        assert int(records[0]["src_identity"]) == client_identity
    _, records = send(dp, OUT, response)
    assert len(records) == int(captured)
    if captured:
        assert_l7_record(records[0], response, names.TRACE_FROM_LXC, caplen=len(response))


@pytest.mark.parametrize("aggregation", [NONE, MEDIUM])
@pytest.mark.parametrize("side", ["client", "server"])
def test_a_client_hello_is_one_trace_record_in_the_l7_ring_only(dp: Datapath, side: str, aggregation: int) -> None:
    configure(dp, aggregation)
    # the client's hello leaving the pod; or entering the pod from a client in the world (a new connection at a
    # to-* point, which medium reports in the main ring: it must not be there twice)
    if side == "client":
        tls, program, point, send_tls = Conversation(IPPROTO_TCP, peer_port=443), OUT, names.TRACE_FROM_LXC, "out"
    else:
        tls, program, point, send_tls = Conversation(IPPROTO_TCP, pod_port=443), IN, names.TRACE_TO_LXC, "back"
    packet = getattr(tls, send_tls)(PSH | ACK, CLIENT_HELLO)
    events, records = send(dp, program, packet)
    assert len(events) == 0
    assert len(records) == 1
    record = records[0]
    assert (int(record["type"]), int(record["subtype"])) == (names.EVENT_TRACE, point)
    assert int(record["len_cap"]) == len(packet)
    assert bytes(record["data"])[: len(packet)] == packet
    # other TLS records on the port (the handshake's next messages, application data) are ordinary packets
    events, records = send(dp, program, getattr(tls, send_tls)(PSH | ACK, b"\x17\x03\x03" * 4))
    assert len(records) == 0
    assert len(events) == (1 if aggregation == NONE else 0)


def test_a_client_hello_the_aggregation_left_pending_reports_the_counts(dp: Datapath) -> None:
    """At medium, a packet of an established connection entering a pod waits in the connection's counts for the
    next report; a ClientHello's record is sent at once, so it is that report, and the next one counts after it."""
    configure(dp, MEDIUM)
    tls = Conversation(IPPROTO_TCP, pod_port=443)  # a client in the world, the pod the server
    events, _ = send(dp, IN, tls.back(SYN))
    assert len(events) == 1  # a new connection: reported
    events, records = send(dp, IN, tls.back(ACK))
    assert len(events) == len(records) == 0  # pending
    hello = tls.back(PSH | ACK, CLIENT_HELLO)
    events, records = send(dp, IN, hello)
    assert len(events) == 0 and len(records) == 1
    record = records[0]
    assert int(record["type"]) == names.EVENT_TRACE and int(record["flags"]) & ev.F_AGGREGATE
    assert int(record["packets"]) == 2  # the ACK and the ClientHello
    assert int(record["bytes"]) == len(tls.back(ACK)) + len(hello)
    send(dp, IN, tls.back(PSH | ACK, b"\x17\x03\x03\x00\x01x"))
    events, _ = send(dp, IN, tls.back(FIN | ACK))
    assert [int(e["packets"]) for e in events] == [2]  # the data and the FIN: the ClientHello was reported


def test_a_dropped_packet_has_no_l7_record(dp: Datapath) -> None:
    # a policy that selects the pod for egress and allows nothing: its query is dropped
    dp.policy.write_generation(1, {}, {EP_IDENTITY: EGRESS})
    configure(dp, NONE, policy_rev=1)
    events, records = send(dp, OUT, Conversation(IPPROTO_UDP, peer_port=53).out(payload=DNS_QUERY), TC_ACT_SHOT)
    assert [int(e["type"]) for e in events] == [names.EVENT_POLICY_VERDICT, names.EVENT_DROP]
    assert len(records) == 0


def test_a_full_l7_ring_counts_each_record_lost(dp: Datapath) -> None:
    capacity = ev.ring_capacity(L7_RING_PAGES * 4096, dp.config.l7_caplen)
    before = sum(dp.l7_lost_counts())
    packet = Conversation(IPPROTO_UDP, peer_port=53).out(payload=DNS_QUERY)
    sent = capacity + 5
    for _ in range(sent):
        assert prog_test_run(dp.program_fd(OUT), packet).retval == TC_ACT_OK
    assert sum(dp.l7_lost_counts()) - before == sent - capacity
    assert len(dp.l7_reader().read_batch(0)) == capacity
    assert len(dp.reader().read_batch(0)) == sent  # the events themselves were not lost


SEND_DNS = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 53))
"""


def test_real_dns_queries_from_a_pod_at_medium(veth: VethPair) -> None:
    with inside(veth.node), Datapath() as dp:
        dp.attach_endpoint(veth.host_if, ep_id=EP_ID, identity=EP_IDENTITY)
        dp.update_config(aggregation=MEDIUM, report_flags=0x07)
        dp.set_l7_ports(parse_l7_ports(DEFAULT_L7_PORTS))
        for server in (veth.node_v4, veth.node_v6):
            for _ in range(2):  # the second is silenced by medium in the main ring, not in the L7 one
                run("python3", "-c", SEND_DNS, server, DNS_QUERY.hex(), netns=veth.pod)
        records = collect_l7(dp, 4)
    assert len(records) == 4
    for record, server in zip(records, [veth.node_v4] * 2 + [veth.node_v6] * 2, strict=True):
        assert int(record["type"]) == EVENT_L7 and int(record["subtype"]) == names.TRACE_FROM_LXC
        assert bytes(record["daddr"]) == addr16(server) and int(record["dport"]) == 53
        header_len = 14 + (40 if ":" in server else 20) + 8
        assert int(record["len_cap"]) == int(record["len_orig"]) == header_len + len(DNS_QUERY)
        assert bytes(record["data"])[header_len : int(record["len_cap"])] == DNS_QUERY


def collect_l7(dp: Datapath, count: int, timeout_s: float = 5.0) -> list[np.void]:
    """Read the L7 ring until `count` records are there (or the time is up)."""
    records: list[np.void] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(dp.l7_reader().read_batch(0.1))
    return records
