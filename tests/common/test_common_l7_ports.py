"""`--l7-ports`: the specs the agent accepts, and a message that names what is wrong with each bad one."""

from __future__ import annotations

import pytest

from flowscope.common.l7_ports import DEFAULT_L7_PORTS, L7Port, parse_l7_ports


def test_the_default_spec() -> None:
    assert parse_l7_ports(DEFAULT_L7_PORTS) == (
        L7Port("udp", 53, "dns", 512),
        L7Port("tcp", 53, "dns", 512),
        L7Port("tcp", 80, "http", 1024),
        L7Port("tcp", 8080, "http", 1024),
        L7Port("tcp", 443, "tls", 1024),
    )


def test_caplen_defaults_by_kind_and_spelling_is_forgiving() -> None:
    assert parse_l7_ports(" UDP/5353=DNS , tcp/8443=tls, tcp/9000=http:256 ") == (
        L7Port("udp", 5353, "dns", 512),
        L7Port("tcp", 8443, "tls", 1024),
        L7Port("tcp", 9000, "http", 256),
    )


@pytest.mark.parametrize("spec", ["none", "NONE", " none "])
def test_none_configures_no_port(spec: str) -> None:
    assert parse_l7_ports(spec) == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "an empty item"),
        ("udp/53=dns,,tcp/80=http", "an empty item"),
        ("udp53=dns", "expected PROTOCOL/PORT=KIND[:CAPLEN]"),
        ("udp/53", "expected PROTOCOL/PORT=KIND[:CAPLEN]"),
        ("sctp/53=dns", "protocol must be tcp or udp, not 'sctp'"),
        ("udp/dns=dns", "port must be a number in 1..65535, not 'dns'"),
        ("udp/0=dns", "port must be a number in 1..65535, not '0'"),
        ("tcp/70000=http", "port must be a number in 1..65535, not '70000'"),
        ("tcp/80=ftp", "kind must be one of dns, http, tls, not 'ftp'"),
        ("udp/80=http", "http is captured over tcp only"),
        ("udp/443=tls", "tls is captured over tcp only"),
        ("tcp/80=http:0", "caplen must be a number in 1..4096, not '0'"),
        ("tcp/80=http:lots", "caplen must be a number in 1..4096, not 'lots'"),
        ("tcp/80=http:", "caplen must be a number in 1..4096, not ''"),
        ("tcp/80=http,tcp/80=tls", "tcp/80 is given twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="L7 port") as error:
        parse_l7_ports(spec)
    assert message in str(error.value)


def test_one_port_may_carry_a_kind_per_protocol() -> None:
    assert {p.protocol for p in parse_l7_ports("udp/53=dns,tcp/53=dns")} == {"udp", "tcp"}
