"""DNS messages decode to Hubble's fields, and broken ones decode as far as they are valid."""

from __future__ import annotations

import struct

from flowscope.observer.l7.dns import parse_dns, type_name
from flowscope.observer.l7.fuzzing import QUESTION_POINTER, dns_message, dns_name, tcp_framed

QUERY = dns_message(0xBEEF, 0x0100, [("Web.Web.svc.lab.", 1)])
ANSWER = dns_message(
    0xBEEF,
    0x8180,
    [("www.example.com.", 28)],
    [
        (QUESTION_POINTER, 5, 300, b"\x03cdn\xc0\x10"),
        (b"\x03cdn\xc0\x10", 28, 45, bytes.fromhex("20010db8000000000000000000000001")),
        (b"\x03cdn\xc0\x10", 1, 60, bytes([10, 200, 1, 12])),
    ],
)


def test_a_query_names_its_question_lower_case_with_a_trailing_dot() -> None:
    message = parse_dns(QUERY, tcp=False)
    assert message is not None
    assert (message.id, message.response, message.query, message.qtypes) == (0xBEEF, False, "web.web.svc.lab.", ("A",))
    assert (message.rrtypes, message.ips, message.ttl, message.truncated) == ((), (), 0, False)


def test_an_answer_gives_ips_cnames_and_the_smallest_ttl_following_pointers() -> None:
    message = parse_dns(ANSWER, tcp=False)
    assert message is not None
    assert message.response and message.rcode == 0 and not message.truncated
    assert message.rrtypes == ("CNAME", "AAAA", "A")
    assert message.ips == ("2001:db8::1", "10.200.1.12")
    assert message.cnames == ("cdn.example.com.",)
    assert message.ttl == 45


def test_over_tcp_the_length_prefix_frames_the_first_message() -> None:
    two = tcp_framed(ANSWER) + tcp_framed(QUERY)
    assert parse_dns(two, tcp=True) == parse_dns(ANSWER, tcp=False)
    cut = parse_dns(tcp_framed(ANSWER)[:-4], tcp=True)
    assert cut is not None and cut.truncated and cut.ips == ("2001:db8::1",)


def test_nxdomain_and_an_extended_rcode_from_edns() -> None:
    nxdomain = parse_dns(dns_message(1, 0x8183, [("missing.lab.", 1)]), tcp=False)
    assert nxdomain is not None and nxdomain.rcode == 3 and nxdomain.ips == ()
    badcookie = dns_message(2, 0x8187, [("a.", 1)], additional=[(b"\x00", 41, 0x01000000, b"")])
    message = parse_dns(badcookie, tcp=False)
    assert message is not None and message.rcode == 23  # (1 << 4) | 7: BADCOOKIE


def test_the_tc_bit_is_reported_apart_from_a_cut_capture() -> None:
    message = parse_dns(dns_message(3, 0x8380, [("big.lab.", 16)]), tcp=False)
    assert message is not None and message.tc and not message.truncated and message.qtypes == ("TXT",)


def test_a_capture_cut_mid_answer_keeps_the_answers_before_it() -> None:
    message = parse_dns(ANSWER[:-3], tcp=False)
    assert message is not None and message.truncated
    assert message.cnames == ("cdn.example.com.",) and message.ips == ("2001:db8::1",)


def test_a_capture_cut_in_the_question_keeps_the_header() -> None:
    message = parse_dns(QUERY[:16], tcp=False)
    assert message is not None and message.truncated and message.query == "" and message.id == 0xBEEF


def test_a_compression_loop_stops_without_hanging() -> None:
    looping = struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0) + dns_name("a.") + b"\x00\x01\x00\x01"
    looping += b"\xc0\x13" + b"\x00\x01\x00\x01\x00\x00\x00\x10\x00\x04\x01\x02\x03\x04"  # owner points at itself
    message = parse_dns(looping, tcp=False)
    assert message is not None and message.truncated and message.query == "a." and message.ips == ()


def test_odd_bytes_in_names_are_escaped_as_dig_does() -> None:
    message = parse_dns(dns_message(4, 0x0100, [("x", 1)]).replace(b"\x01x", b"\x04a.\x00B"), tcp=False)
    assert message is not None and message.query == "a\\.\\000b."
    root = parse_dns(dns_message(5, 0x0100, [(".", 2)]), tcp=False)
    assert root is not None and root.query == "." and root.qtypes == ("NS",)


def test_type_names_are_hubbles_and_unknown_ones_are_numbered() -> None:
    assert [type_name(t) for t in (1, 28, 33, 41, 64, 65, 255, 4242)] == [
        "A", "AAAA", "SRV", "OPT", "SVCB", "HTTPS", "ANY", "TYPE4242",
    ]  # fmt: skip


def test_what_is_not_dns_gives_none() -> None:
    assert parse_dns(b"", tcp=False) is None
    assert parse_dns(QUERY[:11], tcp=False) is None
    assert parse_dns(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", tcp=False) is None  # counts no 64 KiB message holds
    assert parse_dns(struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0), tcp=False) is None  # no question, no answer
    assert parse_dns(struct.pack("!HHHHHH", 1, 0x3900, 1, 0, 0, 0), tcp=False) is None  # opcode 7
    assert parse_dns(b"\x00", tcp=True) is None


def test_an_ipv4_mapped_aaaa_prints_as_hubble_does() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1])
    message = parse_dns(dns_message(6, 0x8180, [("m.", 28)], [(QUESTION_POINTER, 28, 5, mapped)]), tcp=False)
    assert message is not None and message.ips == ("10.0.0.1",)
