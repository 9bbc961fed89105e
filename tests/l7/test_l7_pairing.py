"""Pairing responses with requests: DNS by query id, HTTP in order per connection, bounded and counted."""

from __future__ import annotations

from flowscope.observer.l7.pairing import MAX_PIPELINED, Pairing, PendingRequest

CLIENT = bytes([10, 200, 1, 11]).ljust(16, b"\0")
MS = 1_000_000


def test_a_dns_response_takes_its_query_latency() -> None:
    pairing = Pairing()
    pairing.dns_query((CLIENT, 40000, 17, 0x1234), 1_000 * MS)
    pairing.dns_query((CLIENT, 40000, 17, 0x9999), 1_001 * MS)
    assert pairing.dns_response((CLIENT, 40000, 17, 0x1234), 1_003 * MS) == 3 * MS
    assert pairing.dns_response((CLIENT, 40000, 17, 0x1234), 1_004 * MS) is None  # answered already
    assert pairing.unpaired == 1
    assert pairing.pending() == 1


def test_dns_keys_tell_protocols_and_ports_apart() -> None:
    pairing = Pairing()
    pairing.dns_query((CLIENT, 40000, 6, 7), 0)
    assert pairing.dns_response((CLIENT, 40000, 17, 7), MS) is None
    assert pairing.dns_response((CLIENT, 40001, 6, 7), MS) is None
    assert pairing.dns_response((CLIENT, 40000, 6, 7), MS) == MS


def test_pipelined_http_pairs_in_order() -> None:
    pairing = Pairing()
    connection = (CLIENT, 40000, 80)
    for n, path in enumerate(("/a", "/b", "/c")):
        pairing.http_request(connection, PendingRequest(n * MS, "GET", f"http://web{path}"))
    answered = [pairing.http_response(connection, (10 + n) * MS) for n in range(3)]
    assert [(r.url, 10 * MS + n * MS - r.ts) for n, r in enumerate(answered) if r] == [
        ("http://web/a", 10 * MS),
        ("http://web/b", 10 * MS),
        ("http://web/c", 10 * MS),
    ]
    assert pairing.http_response(connection, 20 * MS) is None
    assert pairing.unpaired == 1
    assert pairing.pending() == 0


def test_keep_alive_connections_do_not_mix() -> None:
    pairing = Pairing()
    pairing.http_request((CLIENT, 40000, 80), PendingRequest(0, "GET", "http://web/one"))
    pairing.http_request((CLIENT, 40001, 80), PendingRequest(MS, "POST", "http://web/two"))
    second = pairing.http_response((CLIENT, 40001, 80), 5 * MS)
    first = pairing.http_response((CLIENT, 40000, 80), 6 * MS)
    assert second is not None and (second.method, second.url) == ("POST", "http://web/two")
    assert first is not None and (first.method, first.url) == ("GET", "http://web/one")


def test_old_requests_are_forgotten_and_counted() -> None:
    pairing = Pairing(timeout_ns=1_000 * MS)
    pairing.dns_query((CLIENT, 1, 17, 1), 0)
    pairing.http_request((CLIENT, 2, 80), PendingRequest(0, "GET", "http://web/"))
    pairing.dns_query((CLIENT, 3, 17, 3), 2_000 * MS)  # sweeps the old query
    pairing.http_request((CLIENT, 4, 80), PendingRequest(2_000 * MS, "GET", "http://web/"))  # and the old request
    assert pairing.dropped == 2
    assert pairing.dns_response((CLIENT, 1, 17, 1), 2_001 * MS) is None
    assert pairing.pending() == 2


def test_a_late_response_has_no_latency() -> None:
    pairing = Pairing(timeout_ns=1_000 * MS)
    pairing.dns_query((CLIENT, 1, 17, 1), 0)
    assert pairing.dns_response((CLIENT, 1, 17, 1), 5_000 * MS) is None
    pairing.http_request((CLIENT, 2, 80), PendingRequest(0, "GET", "http://web/"))
    assert pairing.http_response((CLIENT, 2, 80), 5_000 * MS) is None
    assert pairing.unpaired == 2


def test_pending_requests_are_bounded() -> None:
    pairing = Pairing(capacity=100)
    for port in range(250):
        pairing.dns_query((CLIENT, port, 17, 1), port)
        pairing.http_request((CLIENT, port, 80), PendingRequest(port, "GET", "http://web/"))
    assert pairing.pending() == 200
    assert pairing.dropped == 300
    assert pairing.dns_response((CLIENT, 0, 17, 1), 300) is None  # the least recently used went first
    assert pairing.dns_response((CLIENT, 249, 17, 1), 300) == 51


def test_one_connection_cannot_queue_without_end() -> None:
    pairing = Pairing()
    for n in range(MAX_PIPELINED + 5):
        pairing.http_request((CLIENT, 1, 80), PendingRequest(n, "GET", f"http://web/{n}"))
    assert pairing.pending() == MAX_PIPELINED
    assert pairing.dropped == 5
    oldest = pairing.http_response((CLIENT, 1, 80), 1_000)
    assert oldest is not None and oldest.url == "http://web/5"
