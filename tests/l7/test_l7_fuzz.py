"""The L7 parsers never raise: 20,000 mutated messages per parser, the same ones every run (a fixed seed).

bench/l7_fuzz.py runs a million per parser; this bounded run keeps CI under a few seconds.
"""

from __future__ import annotations

import pytest

from flowscope.observer.l7.dns import parse_dns
from flowscope.observer.l7.fuzzing import Target, dns_seeds, http_seeds, mutated, targets, tls_seeds
from flowscope.observer.l7.http import parse_http
from flowscope.observer.l7.tls import parse_client_hello

MESSAGES = 20_000
SEED = 14


@pytest.mark.parametrize("target", targets(), ids=lambda target: target.name)
def test_mutated_messages_give_a_value_or_nothing(target: Target) -> None:
    for message in mutated(target, MESSAGES, SEED):
        try:
            target.parse(message)
        except Exception as exc:
            pytest.fail(f"{target.name} raised {exc!r} on {message!r}")


@pytest.mark.parametrize("target", targets(), ids=lambda target: target.name)
def test_the_seeds_parse_to_something(target: Target) -> None:
    """Fuzzing from seeds the parser rejects would only ever test its first check."""
    for seed in target.seeds:
        assert target.parse(seed), seed


def test_every_cut_of_a_dns_seed_is_marked_truncated() -> None:
    """A capture may end at any byte: every prefix that still has a header says it is incomplete."""
    for payload, tcp in dns_seeds():
        header_end = 14 if tcp else 12
        for cut in range(header_end, len(payload)):
            message = parse_dns(payload[:cut], tcp)
            assert message is not None and message.truncated, (payload, cut)


def test_every_cut_of_a_client_hello_is_marked_truncated() -> None:
    for payload in tls_seeds():
        for cut in range(6, len(payload)):
            hello = parse_client_hello(payload[:cut])
            assert hello is not None and hello.truncated, (payload, cut)


def test_every_cut_inside_the_first_header_section_is_marked_truncated() -> None:
    for payload in http_seeds():
        section_end = payload.index(b"\r\n\r\n") + 3  # the cut before the last LF still lacks the empty line
        first_field = payload.index(b" ") + (4 if payload.startswith(b"HTTP/") else 2)  # the code; a target byte
        for cut in range(first_field, section_end):
            messages = parse_http(payload[:cut])
            assert len(messages) == 1 and messages[0].truncated, (payload, cut)
