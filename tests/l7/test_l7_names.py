"""Names for addresses: what each pod learnt, attached to records as they are stored, shown on their flows.

Records are the agent's own (tests/records.py), annotated as the ingest thread annotates them; flows come from
the real decoder; the Ingest test runs the real ingest thread over batches handed to it.
"""

from __future__ import annotations

import struct
import threading
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np
import pytest
from records import (
    ACK,
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    PSH,
    SERVER_V4,
    SERVER_V6,
    SYN,
    TS,
    WORLD_V4,
    batch_of,
    ether,
    ipv4,
    ipv6,
    lab_registry,
    record,
    tcp,
    tcp4,
)

from flowscope.common.names import XLATED_FLAG
from flowscope.observer.counts import IngestCounts
from flowscope.observer.events import F_REPLY, F_REPLY_KNOWN, event_dtype
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.ingest import Ingest
from flowscope.observer.l7 import names as names_module
from flowscope.observer.l7.names import MIN_TTL_S, NANOS, SNI_TTL_S, NameCache, NameSets, record_address
from flowscope.observer.parser import FlowDecoder

CLIENT, SERVER, WORLD = record_address(CLIENT_V4), record_address(SERVER_V4), record_address(WORLD_V4)
assert CLIENT and SERVER and WORLD
DNS_SERVER = record_address(DNS_V4)
REPLY = F_REPLY | F_REPLY_KNOWN


@dataclass(frozen=True)
class Answer:
    """A DNS response as the parser gives it (observer/l7/dns.py's DnsMessage has these fields)."""

    query: str
    ips: tuple[str, ...]
    ttl: int = 30
    cnames: tuple[str, ...] = field(default=())


def fresh() -> NameCache:
    return NameCache(NameSets())


def annotated(cache: NameCache, *records: np.ndarray) -> np.ndarray:
    batch = batch_of(list(records))
    cache.annotate(batch)
    return batch


def names_of(cache: NameCache, batch: np.ndarray, row: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(source names, destination names) of one annotated record."""
    return cache.sets.names(int(batch["src_names"][row])), cache.sets.names(int(batch["dst_names"][row]))


# --- name sets -------------------------------------------------------------------------------------------


def test_a_name_set_is_interned_once_and_no_names_is_id_zero() -> None:
    sets = NameSets()
    first = sets.intern(("a.lab", "b.lab"))
    assert first != 0 and sets.intern(("a.lab", "b.lab")) == first
    assert sets.intern(("c.lab",)) not in (0, first)
    assert sets.intern(()) == 0 and sets.names(0) == ()
    assert sets.names(first) == ("a.lab", "b.lab")


def test_an_evicted_id_reads_as_no_names_never_as_another_set() -> None:
    sets = NameSets(capacity=4)
    ids = [sets.intern((f"n{i}.lab",)) for i in range(10)]
    assert [sets.names(i) for i in ids[:6]] == [()] * 6
    assert [sets.names(i) for i in ids[6:]] == [(f"n{i}.lab",) for i in range(6, 10)]
    assert len(set(ids)) == 10  # ids are never given twice


def test_a_set_still_in_use_gets_a_fresh_id_before_it_ages_out() -> None:
    sets = NameSets(capacity=8)
    old = sets.intern(("kept.lab",))
    for i in range(5):
        sets.intern((f"other{i}.lab",))
    renewed = sets.intern(("kept.lab",))
    assert renewed != old and sets.names(renewed) == ("kept.lab",)
    assert sets.names(old) == ("kept.lab",)  # records holding the old id still read it until it is evicted
    assert sets.intern(("kept.lab",)) == renewed


# --- learning and looking up ------------------------------------------------------------------------------


def test_an_answer_names_each_address_by_the_query_and_its_cnames_lower_case_without_the_dot() -> None:
    cache = fresh()
    answer = Answer("WWW.Example.COM.", ("93.184.216.34", "2606:2800:220:1::"), cnames=("edge.example.net.",))
    cache.learn_dns(CLIENT, answer, TS)
    assert cache.lookup(CLIENT, WORLD, TS) == ("edge.example.net", "www.example.com")
    v6 = record_address("2606:2800:220:1::")
    assert v6 is not None and cache.lookup(CLIENT, v6, TS) == ("edge.example.net", "www.example.com")


def test_names_belong_to_the_client_that_asked() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,)), TS)
    assert cache.lookup(CLIENT, SERVER, TS) == ("web.web.svc.lab",)
    assert cache.lookup(WORLD, SERVER, TS) == ()


def test_answers_without_addresses_or_names_teach_nothing() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("nx.lab.", ()), TS)  # NXDOMAIN
    cache.learn_dns(CLIENT, Answer("", (SERVER_V4,)), TS)
    cache.learn_dns(CLIENT, Answer("zero.lab.", ("0.0.0.0",)), TS)  # the unspecified address names nothing
    cache.learn_dns(CLIENT, Answer("bad.lab.", ("not-an-address",)), TS)
    assert len(cache) == 0


def test_a_name_lives_for_its_ttl_but_at_least_the_floor() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("short.lab.", (SERVER_V4,), ttl=5), TS)
    cache.learn_dns(CLIENT, Answer("long.lab.", (WORLD_V4,), ttl=600), TS)
    assert cache.lookup(CLIENT, SERVER, TS + (MIN_TTL_S - 1) * NANOS) == ("short.lab",)
    assert cache.lookup(CLIENT, WORLD, TS + 599 * NANOS) == ("long.lab",)
    late = fresh()
    late.learn_dns(CLIENT, Answer("short.lab.", (SERVER_V4,), ttl=5), TS)
    late.learn_dns(CLIENT, Answer("long.lab.", (WORLD_V4,), ttl=600), TS)
    assert late.lookup(CLIENT, SERVER, TS + MIN_TTL_S * NANOS) == ()
    assert late.lookup(CLIENT, WORLD, TS + 600 * NANOS) == ()
    assert len(late) == 0  # expired pairs are forgotten


def test_a_flow_using_a_name_keeps_it_alive_as_a_live_connection_does() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,), ttl=1), TS)
    for minute in range(1, 6):  # a flow every 50 s: each keeps the name for MIN_TTL_S more
        assert cache.lookup(CLIENT, SERVER, TS + minute * 50 * NANOS) == ("web.web.svc.lab",)
    assert cache.lookup(CLIENT, SERVER, TS + (250 + MIN_TTL_S) * NANOS) == ()


def test_a_tls_server_name_names_the_server_for_the_client() -> None:
    cache, late = fresh(), fresh()
    for learner in (cache, late):
        learner.learn_sni(CLIENT, SERVER, "Web.Web.svc.lab", TS)
    assert cache.lookup(CLIENT, SERVER, TS + (SNI_TTL_S - 1) * NANOS) == ("web.web.svc.lab",)
    assert late.lookup(CLIENT, SERVER, TS + SNI_TTL_S * NANOS) == ()
    cache.learn_sni(CLIENT, WORLD, "", TS)
    assert cache.lookup(CLIENT, WORLD, TS) == ()


def test_the_cache_is_bounded_per_client_and_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names_module, "MAX_PEERS_PER_CLIENT", 3)
    monkeypatch.setattr(names_module, "MAX_PAIRS", 5)
    monkeypatch.setattr(names_module, "MAX_NAMES_PER_PAIR", 2)
    cache = fresh()
    peers = [f"10.9.0.{i}" for i in range(1, 5)]
    for i, peer in enumerate(peers):
        cache.learn_dns(CLIENT, Answer(f"p{i}.lab.", (peer,)), TS)
    assert len(cache) == 3  # the client's oldest peer went first
    assert cache.lookup(CLIENT, record_address(peers[0]) or b"", TS) == ()
    assert cache.lookup(CLIENT, record_address(peers[3]) or b"", TS) == ("p3.lab",)
    for i, peer in enumerate(peers[:3]):
        cache.learn_dns(WORLD, Answer(f"w{i}.lab.", (peer,)), TS)
    assert len(cache) == 5  # the least recently learnt client gave way
    for ttl, name in ((30, "a.lab."), (60, "b.lab."), (90, "c.lab.")):
        cache.learn_dns(WORLD, Answer(name, (SERVER_V4,), ttl=ttl + MIN_TTL_S), TS)
    assert cache.lookup(WORLD, SERVER, TS) == ("b.lab", "c.lab")  # the name expiring first gave way


def test_memory_bytes_follows_what_tracemalloc_measures() -> None:
    tracemalloc.start()
    try:
        cache = fresh()
        for i in range(5000):
            answer = Answer(f"host{i}.example.com.", (f"10.9.{i // 250}.{i % 250 + 1}",), cnames=(f"c{i}.cdn.net.",))
            cache.learn_dns(record_address(f"10.200.0.{i % 50 + 1}") or b"", answer, TS)
        measured, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(cache.memory_bytes() - measured) < 0.2 * measured, (cache.memory_bytes(), measured)


# --- annotate ---------------------------------------------------------------------------------------------


def test_annotate_names_the_destination_of_a_request_and_the_source_of_its_reply() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,)), TS - NANOS)
    request = record(tcp4(flags=SYN))
    reply = record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY)
    other = record(tcp4(WORLD_V4, SERVER_V4, 51000, 80))  # the world asked nothing
    batch = annotated(cache, request, reply, other)
    assert names_of(cache, batch, 0) == ((), ("web.web.svc.lab",))
    assert names_of(cache, batch, 1) == (("web.web.svc.lab",), ())
    assert names_of(cache, batch, 2) == ((), ())


def test_annotate_over_ipv6() -> None:
    cache = fresh()
    cache.learn_dns(record_address(CLIENT_V6) or b"", Answer("web.web.svc.lab.", (SERVER_V6,)), TS - NANOS)
    packet = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 80)), 0x86DD)
    batch = annotated(cache, record(packet), record(tcp4()))
    assert names_of(cache, batch, 0) == ((), ("web.web.svc.lab",))
    assert names_of(cache, batch, 1) == ((), ())  # the same server over IPv4: not what was resolved


def test_names_attached_at_store_time_stay_after_the_ttl_ran_out() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,), ttl=1), TS - NANOS)
    stored = annotated(cache, record(tcp4()))
    later = annotated(cache, record(tcp4(), ts=TS + 10 * MIN_TTL_S * NANOS))
    assert names_of(cache, stored) == ((), ("web.web.svc.lab",))
    assert names_of(cache, later) == ((), ())


def test_annotate_leaves_records_of_unnamed_addresses_and_empty_headers_alone() -> None:
    cache = fresh()
    cache.annotate(batch_of([record(tcp4())]))  # an empty cache: nothing to do
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,)), TS - NANOS)
    lost = record(type=4, ifindex=0, ep_id=0)  # no addresses at all
    batch = annotated(cache, lost, record(tcp4(CLIENT_V4, DNS_V4, 40000, 53)))
    assert batch["src_names"].tolist() == [0, 0] and batch["dst_names"].tolist() == [0, 0]
    cache.annotate(batch[:0])


def test_one_name_set_serves_every_record_with_the_same_names() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,)), TS - NANOS)
    batch = annotated(cache, *[record(tcp4(sport=40000 + i)) for i in range(50)])
    assert len(set(batch["dst_names"].tolist())) == 1 and batch["dst_names"][0] != 0


def test_a_translated_record_is_named_by_the_frontend_its_client_asked_for() -> None:
    frontends = {7: "10.96.0.80"}
    cache = NameCache(NameSets(), frontend_ip=frontends.get)
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", ("10.96.0.80",)), TS - NANOS)
    xlated = {"policy_flags": XLATED_FLAG, "rule": 7}
    to_backend = record(tcp4(flags=SYN), **xlated)  # past the translation: the backend's address
    reply = record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY, **xlated)
    plain = record(tcp4(flags=SYN))  # the backend reached directly: not what the client resolved
    unknown = record(tcp4(flags=SYN), policy_flags=XLATED_FLAG, rule=8)  # a frontend the agent does not know
    to_frontend = record(tcp4(CLIENT_V4, "10.96.0.80", 40001, 80), **xlated)  # before the translation
    batch = annotated(cache, to_backend, reply, plain, unknown, to_frontend)
    assert [names_of(cache, batch, row) for row in range(5)] == [
        ((), ("web.web.svc.lab",)),
        (("web.web.svc.lab",), ()),
        ((), ()),
        ((), ()),
        ((), ("web.web.svc.lab",)),
    ]


# --- flows ------------------------------------------------------------------------------------------------


def decoder_with(cache: NameCache) -> FlowDecoder:
    decoder = FlowDecoder("node1", lab_registry(), b"names-tests")
    decoder.name_sets = cache.sets
    return decoder


def test_flows_carry_the_names_of_their_addresses() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,), cnames=("web.lab.",)), TS - NANOS)
    batch = annotated(cache, record(tcp4()), record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY))
    decoder = decoder_with(cache)
    request, reply = (decoder.decode(batch[i], i) for i in range(2))
    assert list(request.destination_names) == ["web.lab", "web.web.svc.lab"] and not request.source_names
    assert list(reply.source_names) == ["web.lab", "web.web.svc.lab"] and not reply.destination_names


def test_a_decoder_without_name_sets_shows_no_names() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,)), TS - NANOS)
    batch = annotated(cache, record(tcp4()))
    flow = FlowDecoder("node1", lab_registry(), b"names-tests").decode(batch[0], 0)
    assert not flow.destination_names


def client_hello(server_name: str) -> bytes:
    """A TLS 1.2-style ClientHello record with one cipher suite and a server_name extension."""
    name = server_name.encode()
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    sni = struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    extensions = struct.pack("!H", len(sni)) + sni
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def hello_record(payload: bytes, caplen: int) -> np.ndarray:
    packet = ether(ipv4(CLIENT_V4, SERVER_V4, 6, tcp(40000, 443, PSH | ACK, payload=payload)))
    return record(packet, caplen=caplen)


def test_a_client_hello_names_its_server_in_the_summary() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"names-tests")
    flow = decoder.decode(hello_record(client_hello("web.web.svc.lab"), 1024)[0], 1)
    assert flow.Summary == "TCP Flags: ACK, PSH (TLS ClientHello SNI web.web.svc.lab)"


def test_a_client_hello_cut_before_its_server_name_still_says_what_it_is() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"names-tests")
    flow = decoder.decode(hello_record(client_hello("web.web.svc.lab"), 128)[0], 1)
    assert flow.Summary == "TCP Flags: ACK, PSH (TLS ClientHello)"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello
        b"\x17\x03\x03\x00\x10" + bytes(16),  # application data
        b"\x16\x03",  # cut
    ],
)
def test_other_segments_keep_their_plain_summary(payload: bytes) -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"names-tests")
    flow = decoder.decode(hello_record(payload, 1024)[0], 1)
    assert flow.Summary == "TCP Flags: ACK, PSH"


# --- the ingest thread ----------------------------------------------------------------------------------


class OneBatch:
    """Hands out one batch, then waits like an idle ring buffer."""

    def __init__(self, batch: np.ndarray) -> None:
        self._batch: np.ndarray | None = batch
        self.drained = threading.Event()

    def read_batch(self, timeout: float) -> np.ndarray:
        if self._batch is not None:
            batch, self._batch = self._batch, None
            return batch
        self.drained.set()
        time.sleep(timeout)
        return np.empty(0, dtype=event_dtype())


def test_ingest_annotates_each_batch_before_the_ring_stores_it() -> None:
    cache = fresh()
    cache.learn_dns(CLIENT, Answer("web.web.svc.lab.", (SERVER_V4,), ttl=10**10), 0)  # past any stamped ts
    ring = FlowRing(1023, event_dtype())
    source = OneBatch(batch_of([record(tcp4(), ts=0), record(tcp4(CLIENT_V4, DNS_V4, 40000, 53), ts=0)]))
    ingest = Ingest(source, ring, IngestCounts(), lambda: [0], event_dtype(), annotate=cache.annotate)
    ingest.start()
    try:
        assert source.drained.wait(10)
    finally:
        ingest.stop()
        ingest.join(timeout=2)
    stored = ring.read(0, 2).records
    assert [cache.sets.names(int(i)) for i in stored["dst_names"]] == [("web.web.svc.lab",), ()]
