"""The L7 source: records of the datapath's L7 ring (built as l7.h builds them) in, reference records out.

Each test hands the source a batch as the ring reader would return it (type 129 records of event_dtype(1024),
the packet from its Ethernet header on) and checks what Ingest would store: the main-dtype records, their
entries in the L7 store (Hubble's Layer7 fields and Summary text), what the name cache learnt, the counts.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
from records import (
    ACK,
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    PSH,
    SERVER_V4,
    TS,
    ether,
    ipv4,
    ipv6,
    lab_registry,
    record,
    tcp,
    udp,
)

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.common.l7_ports import DEFAULT_L7_PORTS, parse_l7_ports
from flowscope.observer import events
from flowscope.observer.l7.counts import L7Counts
from flowscope.observer.l7.names import NameCache, NameSets
from flowscope.observer.l7.source import L7Source, Redaction
from flowscope.observer.l7.store import L7Entry, L7Store
from flowscope.observer.parser import FlowDecoder

L7_CAPLEN = 1024
MS = 1_000_000
KNOWN = events.F_REPLY_KNOWN
DNS_V6 = "fd00:200:2::21"


class Ring:
    """Batches as the L7 ring's reader returns them, one per read."""

    def __init__(self, *batches: np.ndarray) -> None:
        self.batches = list(batches)

    def read_batch(self, timeout: float) -> np.ndarray:
        return self.batches.pop(0) if self.batches else np.zeros(0, dtype=events.event_dtype(L7_CAPLEN))


# --- messages, byte by byte --------------------------------------------------------------------------------


def qname(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"


def dns_query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack("!HH", qtype, 1)


def dns_answer(name: str, ips: list[str], ttl: int = 30, qtype: int = 1, ident: int = 0x1234, rcode: int = 0) -> bytes:
    answers = b""
    for ip in ips:
        packed = ipaddress.ip_address(ip).packed
        rrtype = 1 if len(packed) == 4 else 28
        answers += struct.pack("!HHHIH", 0xC00C, rrtype, 1, ttl, len(packed)) + packed
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(ips), 0, 0)
    return header + qname(name) + struct.pack("!HH", qtype, 1) + answers


def l7(packet: bytes, point: int = names.TRACE_FROM_LXC, ts: int = TS, **fields: int) -> np.ndarray:
    """An L7 ring record of `packet`, as the datapath writes it: type 129, subtype = the point."""
    return record(packet, caplen=L7_CAPLEN, type=names.EVENT_TRACE + 125, subtype=point, ts=ts, **fields)


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    return ether(ipv4(src, dst, 17, udp(sport, dport, payload)))


def tcp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    return ether(ipv4(src, dst, 6, tcp(sport, dport, PSH | ACK, payload=payload)))


def source(*batches: np.ndarray, **kw: object) -> tuple[L7Source, L7Store]:
    store = L7Store()
    return L7Source(Ring(*batches), parse_l7_ports(DEFAULT_L7_PORTS), store, **kw), store  # type: ignore[arg-type]


def entries(store: L7Store, out: np.ndarray) -> list[L7Entry]:
    found = [store.get(int(seq)) for seq in out["location"]]
    assert all(entry is not None for entry in found)
    return [entry for entry in found if entry is not None]


def layer7(entry: L7Entry) -> flow_pb2.Layer7:
    return flow_pb2.Layer7.FromString(entry.layer7)


# --- DNS ---------------------------------------------------------------------------------------------------


def test_a_dns_query_and_its_answer_become_hubble_s_request_and_response() -> None:
    query = l7(udp4(CLIENT_V4, DNS_V4, 40000, 53, dns_query("web.web.svc.lab")))
    answer = l7(
        udp4(DNS_V4, CLIENT_V4, 53, 40000, dns_answer("web.web.svc.lab", ["10.200.1.12"])),
        point=names.TRACE_TO_LXC,
        ts=TS + 3 * MS,
    )
    src, store = source(query, answer)
    out = np.concatenate([src.read_batch(0), src.read_batch(0)])
    assert out.dtype == events.event_dtype()
    request, response = entries(store, out)
    assert request.summary == "DNS Query web.web.svc.lab. A"
    assert response.summary == 'DNS Answer "10.200.1.12" TTL: 30 (Proxy web.web.svc.lab. A)'
    assert layer7(request) == flow_pb2.Layer7(
        type=flow_pb2.REQUEST,
        dns=flow_pb2.DNS(query="web.web.svc.lab.", observation_source="proxy", qtypes=["A"]),
    )
    assert layer7(response) == flow_pb2.Layer7(
        type=flow_pb2.RESPONSE,
        latency_ns=3 * MS,
        dns=flow_pb2.DNS(
            query="web.web.svc.lab.",
            ips=["10.200.1.12"],
            ttl=30,
            observation_source="proxy",
            qtypes=["A"],
            rrtypes=["A"],
        ),
    )
    assert (request.kind, request.l7_type, request.dns_query) == ("dns", 1, "web.web.svc.lab.")
    assert (response.l7_type, response.dns_rcode) == (2, 0)
    assert src.counts.messages == 2 and src.counts.unpaired == 0


def test_the_reference_record_keeps_the_header_and_the_packet_s_first_bytes() -> None:
    packet = udp4(
        CLIENT_V4,
        DNS_V4,
        40000,
        53,
        dns_query("a-rather-long-name.to-fill-more-than.the-first-128-bytes.of-the-packet.web.svc.lab"),
    )
    raw = l7(packet, src_identity=1001, dst_identity=2001, ep_id=1001)
    src, store = source(raw)
    (out,) = src.read_batch(0)
    for name, _ in events.HEADER_FIELDS:
        if name not in ("location", "len_cap"):
            assert out[name] == raw[0][name], name
    assert out["type"] == 129 and out["subtype"] == names.TRACE_FROM_LXC
    assert out["len_cap"] == events.DEFAULT_CAPLEN < len(packet) == out["len_orig"]
    assert out["data"].tobytes() == packet[: events.DEFAULT_CAPLEN]
    assert store.get(int(out["location"])) is not None


def test_dns_over_tcp_and_ipv6_and_aaaa() -> None:
    framed = dns_query("web.web.svc.lab", qtype=28, ident=7)
    answer = dns_answer("web.web.svc.lab", ["fd00:200:1::12"], qtype=28, ident=7)
    query_packet = ether(
        ipv6(CLIENT_V6, DNS_V6, 6, tcp(40001, 53, PSH | ACK, payload=struct.pack("!H", len(framed)) + framed)), 0x86DD
    )
    answer_packet = ether(
        ipv6(DNS_V6, CLIENT_V6, 6, tcp(53, 40001, PSH | ACK, payload=struct.pack("!H", len(answer)) + answer)), 0x86DD
    )
    src, store = source(l7(query_packet), l7(answer_packet, point=names.TRACE_TO_LXC, ts=TS + MS))
    request, response = entries(store, np.concatenate([src.read_batch(0), src.read_batch(0)]))
    assert request.summary == "DNS Query web.web.svc.lab. AAAA"
    assert response.summary == 'DNS Answer "fd00:200:1::12" TTL: 30 (Proxy web.web.svc.lab. AAAA)'
    assert layer7(response).latency_ns == MS


def test_nxdomain_names_its_rcode() -> None:
    query = l7(udp4(CLIENT_V4, DNS_V4, 40000, 53, dns_query("nope.lab", ident=9)))
    answer = l7(udp4(DNS_V4, CLIENT_V4, 53, 40000, dns_answer("nope.lab", [], ident=9, rcode=3)), ts=TS + MS)
    src, store = source(np.concatenate([query, answer]))
    _, response = entries(store, src.read_batch(0))
    assert response.summary == "DNS Answer RCode: Non-Existent Domain TTL: 0 (Proxy nope.lab. A)"
    assert (layer7(response).dns.rcode, response.dns_rcode) == (3, 3)


def test_an_unanswered_response_has_no_latency_and_is_counted() -> None:
    src, store = source(l7(udp4(DNS_V4, CLIENT_V4, 53, 40000, dns_answer("web.lab", ["10.200.1.12"]))))
    (response,) = entries(store, src.read_batch(0))
    assert layer7(response).latency_ns == 0
    assert src.counts.unpaired == 1


def test_dns_answers_teach_the_name_cache() -> None:
    cache = NameCache(NameSets())
    answer = udp4(DNS_V4, CLIENT_V4, 53, 40000, dns_answer("web.web.svc.lab", ["10.200.1.12"]))
    src, _ = source(l7(answer, point=names.TRACE_TO_LXC), names=cache)
    src.read_batch(0)
    client = ipaddress.ip_address(CLIENT_V4).packed.ljust(16, b"\0")
    server = ipaddress.ip_address(SERVER_V4).packed.ljust(16, b"\0")
    assert cache.lookup(client, server, TS + src._clock.offset_ns) == ("web.web.svc.lab",)


# --- HTTP --------------------------------------------------------------------------------------------------

REQUEST = (
    b"GET /status/500?secret=x HTTP/1.1\r\nHost: web.web.svc.lab\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
)
RESPONSE = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nerror"


def test_an_http_exchange_pairs_with_redaction_on_by_default() -> None:
    request = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, REQUEST))
    response = l7(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, RESPONSE), point=names.TRACE_TO_LXC, ts=TS + 12 * MS)
    src, store = source(np.concatenate([request, response]))
    sent, answered = entries(store, src.read_batch(0))
    url = "http://web.web.svc.lab/status/500?HUBBLE_REDACTED"
    assert sent.summary == f"HTTP/1.1 GET {url}"
    assert answered.summary == f"HTTP/1.1 500 12ms (GET {url})"
    assert layer7(sent) == flow_pb2.Layer7(
        type=flow_pb2.REQUEST, http=flow_pb2.HTTP(method="GET", url=url, protocol="HTTP/1.1")
    )
    assert layer7(answered) == flow_pb2.Layer7(
        type=flow_pb2.RESPONSE,
        latency_ns=12 * MS,
        http=flow_pb2.HTTP(code=500, method="GET", url=url, protocol="HTTP/1.1"),
    )
    assert (answered.http_code, answered.http_method, answered.http_path) == (500, "GET", "/status/500")
    assert sent.http_headers == answered.http_headers == ()


def test_redaction_can_be_turned_off_and_headers_allow_listed() -> None:
    request = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, REQUEST))
    redaction = Redaction(keep_url_query=True, headers=frozenset({"user-agent", "content-type"}))
    src, store = source(request, redaction=redaction)
    (sent,) = entries(store, src.read_batch(0))
    assert sent.http_url == "http://web.web.svc.lab/status/500?secret=x"
    assert sent.http_headers == (("User-Agent", "curl/7.88.1"),)
    assert list(layer7(sent).http.headers) == [flow_pb2.HTTPHeader(key="User-Agent", value="curl/7.88.1")]


def test_pipelined_requests_and_responses_pair_in_order() -> None:
    two = b"GET /a HTTP/1.1\r\nHost: web\r\n\r\nGET /b HTTP/1.1\r\nHost: web\r\n\r\n"
    answers = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    requests = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, two))
    responses = l7(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, answers), point=names.TRACE_TO_LXC, ts=TS + 2 * MS)
    src, store = source(np.concatenate([requests, responses]))
    out = src.read_batch(0)
    assert len(out) == 4
    assert out["ts"].tolist() == [TS, TS, TS + 2 * MS, TS + 2 * MS]  # several messages share their packet's header
    assert [e.summary for e in entries(store, out)] == [
        "HTTP/1.1 GET http://web/a",
        "HTTP/1.1 GET http://web/b",
        "HTTP/1.1 200 2ms (GET http://web/a)",
        "HTTP/1.1 404 2ms (GET http://web/b)",
    ]


def test_a_request_without_host_is_named_by_the_server_address() -> None:
    request = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 8080, b"GET /x HTTP/1.0\r\n\r\n"))
    src, store = source(request)
    (sent,) = entries(store, src.read_batch(0))
    assert sent.summary == f"HTTP/1.0 GET http://{SERVER_V4}:8080/x"


# --- what is not L7, and TLS -------------------------------------------------------------------------------


def test_a_payload_that_is_not_what_the_port_suggests_gives_no_l7_flow() -> None:
    ssh = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, b"SSH-2.0-OpenSSH_9.2\r\n"))
    garbage = l7(udp4(CLIENT_V4, DNS_V4, 40000, 53, b"\x00\x01"))
    src, store = source(np.concatenate([ssh, garbage]))
    assert len(src.read_batch(0)) == 0
    assert (src.counts.not_l7, src.counts.messages, store.last) == (2, 0, 0)


def client_hello(server_name: str) -> bytes:
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions = struct.pack("!HH", 0, len(sni)) + sni
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(extensions)) + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def test_a_tls_client_hello_passes_as_its_trace_record_and_names_the_server() -> None:
    cache = NameCache(NameSets())
    hello = record(
        tcp4(CLIENT_V4, SERVER_V4, 40000, 443, client_hello("secure.web.svc.lab")),
        caplen=L7_CAPLEN,
        type=names.EVENT_TRACE,
        subtype=names.TRACE_FROM_LXC,
    )
    src, store = source(hello, names=cache)
    (out,) = src.read_batch(0)
    assert (out["type"], store.last) == (names.EVENT_TRACE, 0)
    assert cache.sets.names(int(out["location"])) == ("secure.web.svc.lab",)  # for the decoder's Summary
    assert out["data"].tobytes() == hello[0]["data"].tobytes()[: events.DEFAULT_CAPLEN]
    client = ipaddress.ip_address(CLIENT_V4).packed.ljust(16, b"\0")
    server = ipaddress.ip_address(SERVER_V4).packed.ljust(16, b"\0")
    assert cache.lookup(client, server, TS + src._clock.offset_ns) == ("secure.web.svc.lab",)
    assert src.counts.not_l7 == 0


def test_an_empty_read_is_an_empty_batch_of_the_main_dtype() -> None:
    src, _ = source()
    out = src.read_batch(0)
    assert len(out) == 0 and out.dtype == events.event_dtype()


# --- the decoder: reference records to Hubble's L7 flows ----------------------------------------------------


def decoder_for(store: L7Store, counts: L7Counts | None = None) -> FlowDecoder:
    decoder = FlowDecoder("node1", lab_registry(), b"instance-1")
    decoder.l7, decoder.l7_counts = store, counts
    return decoder


def test_reference_records_decode_into_hubble_s_l7_flows() -> None:
    query = l7(udp4(CLIENT_V4, DNS_V4, 40000, 53, dns_query("web.web.svc.lab")), ep_id=1001, flags=KNOWN)
    answer = l7(
        udp4(DNS_V4, CLIENT_V4, 53, 40000, dns_answer("web.web.svc.lab", ["10.200.1.12"])),
        point=names.TRACE_TO_LXC,
        ts=TS + 3 * MS,
        ep_id=1001,
        flags=KNOWN | events.F_REPLY,
    )
    src, store = source(np.concatenate([query, answer]))
    out = src.read_batch(0)
    decoder = decoder_for(store)
    request, response = (decoder.decode(row, n) for n, row in enumerate(out))
    for flow in (request, response):
        assert flow.Type == flow_pb2.L7
        assert (flow.event_type.type, flow.event_type.sub_type) == (129, 0)
        assert flow.trace_observation_point == flow_pb2.UNKNOWN_POINT
        assert flow.verdict == flow_pb2.FORWARDED
        assert flow.traffic_direction == flow_pb2.EGRESS  # both halves, as from Hubble's egress proxy
        assert flow.l4.UDP.destination_port + flow.l4.UDP.source_port == 40053
    assert (request.source.pod_name, request.destination.pod_name) == ("client-7d9f", "coredns-abc")
    assert (response.source.pod_name, response.destination.pod_name) == ("coredns-abc", "client-7d9f")
    assert request.Summary == "DNS Query web.web.svc.lab. A"
    assert response.Summary == 'DNS Answer "10.200.1.12" TTL: 30 (Proxy web.web.svc.lab. A)'
    assert (request.is_reply.value, response.is_reply.value) == (False, True)
    assert response.l7.type == flow_pb2.RESPONSE and response.l7.latency_ns == 3 * MS
    assert list(response.l7.dns.ips) == ["10.200.1.12"]


def test_an_evicted_entry_leaves_an_l7_flow_without_l7_fields_counted() -> None:
    request = l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, REQUEST))
    store = L7Store(1)
    src = L7Source(Ring(request, request), parse_l7_ports(DEFAULT_L7_PORTS), store)
    first, second = src.read_batch(0), src.read_batch(0)
    counts = L7Counts()
    decoder = decoder_for(store, counts)
    flow = decoder.decode(first[0], 1)
    assert flow.Type == flow_pb2.L7 and not flow.HasField("l7")
    assert flow.Summary.startswith("TCP Flags")
    assert counts.evicted == 1
    assert decoder.decode(second[0], 2).l7.http.method == "GET"


def test_a_capture_cut_mid_message_marks_the_flow_truncated() -> None:
    cut = REQUEST[:40]  # inside the Host header
    src, store = source(l7(tcp4(CLIENT_V4, SERVER_V4, 40000, 80, cut)))
    flow = decoder_for(store).decode(src.read_batch(0)[0], 1)
    assert flow.l7.http.method == "GET" and flow.flowscope.truncated
