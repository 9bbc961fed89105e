"""Seed messages and a byte mutator for fuzzing the L7 parsers, shared by the CI test and bench/l7_fuzz.py.

The parsers' input is whatever a pod sends, cut anywhere by the capture length; the promise is that they give a
value or None / [] and never raise. Fuzzing checks that promise from real-looking messages (valid DNS, HTTP and
ClientHellos, with compression pointers, pipelining and chunked bodies) mutated the ways captures and hostile
senders break them: flipped bits, interesting bytes, cuts, insertions, deletions and spliced repeats. It lives in
the package so the test and the bench import one copy, seeded, so a failure is reproducible.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from flowscope.observer.l7.dns import parse_dns
from flowscope.observer.l7.http import parse_http
from flowscope.observer.l7.tls import parse_client_hello

# Bytes that sit on the parsers' decisions: lengths, pointers (0xc0), label kinds, line ends, separators.
INTERESTING = (0x00, 0x01, 0x03, 0x0A, 0x0D, 0x16, 0x20, 0x3A, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF)


def dns_name(name: str) -> bytes:
    """A name in wire form, uncompressed."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return bytes(out + b"\x00")


def dns_message(
    ident: int,
    flags: int,
    questions: Sequence[tuple[str, int]],
    answers: Sequence[tuple[bytes, int, int, bytes]] = (),
    additional: Sequence[tuple[bytes, int, int, bytes]] = (),
) -> bytes:
    """A DNS message; answers and additional records are (owner in wire form, type, ttl, rdata)."""
    out = bytearray(struct.pack("!HHHHHH", ident, flags, len(questions), len(answers), 0, len(additional)))
    for name, qtype in questions:
        out += dns_name(name) + struct.pack("!HH", qtype, 1)
    for owner, rrtype, ttl, rdata in (*answers, *additional):
        out += owner + struct.pack("!HHIH", rrtype, 1, ttl, len(rdata)) + rdata
    return bytes(out)


QUESTION_POINTER = b"\xc0\x0c"  # the first question's name, where every message's first question sits


def tcp_framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def client_hello(server_name: str | None, extensions_before: int = 2) -> bytes:
    """A TLS 1.2-framed ClientHello record, its server_name after `extensions_before` other extensions."""
    extensions = bytearray()
    for index in range(extensions_before):
        extensions += struct.pack("!HH", 0x000A + index, 4) + b"\x00\x02\x00\x1d"
    if server_name is not None:
        host = server_name.encode()
        entry = b"\x00" + struct.pack("!H", len(host)) + host
        extensions += struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    extensions += struct.pack("!HH", 0x002B, 3) + b"\x02\x03\x04"  # supported_versions
    body = (
        b"\x03\x03"
        + bytes(range(32))
        + b"\x20"
        + bytes(32)
        + b"\x00\x04\x13\x01\x13\x02"
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + bytes(extensions)
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def dns_seeds() -> list[tuple[bytes, bool]]:
    """(payload, over TCP) pairs: queries and answers with CNAME chains, compression, EDNS and NXDOMAIN."""
    query = dns_message(0x1234, 0x0100, [("web.web.svc.lab.", 1)])
    answer = dns_message(
        0x1234,
        0x8180,
        [("www.example.com.", 1)],
        [
            (QUESTION_POINTER, 5, 300, b"\x03cdn\xc0\x10"),
            (b"\x03cdn\xc0\x10", 1, 30, bytes([93, 184, 216, 34])),
            (b"\xc0\x0c", 28, 60, bytes(15) + b"\x01"),
        ],
        [(b"\x00", 41, 0x00008000, b"")],  # EDNS0 with the DO bit
    )
    nxdomain = dns_message(7, 0x8183, [("missing.lab.", 28)])
    return [(query, False), (answer, False), (nxdomain, False), (tcp_framed(answer), True), (tcp_framed(query), True)]


def http_seeds() -> list[bytes]:
    return [
        b"GET /status/404?token=abc HTTP/1.1\r\nHost: web.web.svc.lab\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        b"POST http://user:pw@web/api HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n",
    ]


def tls_seeds() -> list[bytes]:
    return [client_hello("web.example.com"), client_hello("a.b", 0), client_hello(None)]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four mutations of data, each picked at random."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        position = rng.randrange(len(out) + 1)
        if choice == 0 and out:  # flip a bit
            index = position % len(out)
            out[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:  # an interesting byte
            out[position % len(out)] = rng.choice(INTERESTING)
        elif choice == 2:  # random byte
            out[position % max(len(out), 1) : position % max(len(out), 1) + 1] = bytes([rng.randrange(256)])
        elif choice == 3:  # cut, as a capture length does
            del out[position:]
        elif choice == 4:  # insert a few bytes
            out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 5:  # delete a few bytes
            del out[position : position + rng.randint(1, 8)]
        else:  # repeat a slice elsewhere (splices lengths and pointers into odd places)
            start = rng.randrange(len(out) + 1)
            piece = out[start : start + rng.randint(1, 32)]
            out[position:position] = piece
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Target:
    """One parser under fuzzing: its seeds and how to call it on a payload."""

    name: str
    seeds: tuple[bytes, ...]
    parse: Callable[[bytes], object]


def targets() -> tuple[Target, ...]:
    dns = dns_seeds()
    return (
        Target("dns-udp", tuple(payload for payload, tcp in dns if not tcp), lambda b: parse_dns(b, tcp=False)),
        Target("dns-tcp", tuple(payload for payload, tcp in dns if tcp), lambda b: parse_dns(b, tcp=True)),
        Target("http", tuple(http_seeds()), parse_http),
        Target("tls", tuple(tls_seeds()), parse_client_hello),
    )


def mutated(target: Target, count: int, seed: int) -> Iterator[bytes]:
    """count mutated messages from target's seeds, the same ones for the same seed."""
    rng = random.Random(f"{target.name}:{seed}")
    for _ in range(count):
        yield mutate(rng.choice(target.seeds), rng)
