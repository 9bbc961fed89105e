"""A ClientHello's server name is found wherever the capture holds it; what is not a ClientHello gives None."""

from __future__ import annotations

import contextlib
import ssl

from flowscope.observer.l7.fuzzing import client_hello
from flowscope.observer.l7.tls import TlsHello, parse_client_hello

HELLO = client_hello("Web.Example.COM", extensions_before=3)


def test_the_server_name_comes_lower_case_from_a_whole_hello() -> None:
    assert parse_client_hello(HELLO) == TlsHello(server_name="web.example.com", truncated=False)


def test_a_hello_without_a_server_name() -> None:
    assert parse_client_hello(client_hello(None)) == TlsHello(server_name="", truncated=False)


def test_a_cut_hello_gives_the_name_when_the_capture_holds_it() -> None:
    name_ends = HELLO.index(b"COM") + 3
    assert parse_client_hello(HELLO[:name_ends]) == TlsHello("web.example.com", truncated=True)
    assert parse_client_hello(HELLO[: name_ends - 1]) == TlsHello("", truncated=True)
    assert parse_client_hello(HELLO[:9]) == TlsHello("", truncated=True)


def test_a_hello_split_over_two_records_is_joined() -> None:
    handshake = HELLO[5:]
    split = b"".join(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part for part in (handshake[:40], handshake[40:]))
    assert parse_client_hello(split) == TlsHello("web.example.com", truncated=False)


def test_what_is_not_a_client_hello_gives_none() -> None:
    server_hello = HELLO[:5] + b"\x02" + HELLO[6:]
    for payload in (b"", HELLO[:5], b"\x17\x03\x03\x00\x10" + bytes(16), server_hello, b"GET / HTTP/1.1\r\n\r\n"):
        assert parse_client_hello(payload) is None, payload


def test_a_real_openssl_client_hello() -> None:
    """The hello Python's OpenSSL (as curl's) sends: TLS 1.3 key shares, the name after several extensions."""
    outgoing = ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="Web.Web.svc.lab")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert parse_client_hello(hello) == TlsHello("web.web.svc.lab", truncated=False)
    name_ends = hello.index(b"Web.Web.svc.lab") + len("Web.Web.svc.lab")
    assert parse_client_hello(hello[:name_ends]) == TlsHello("web.web.svc.lab", truncated=True)
