"""Addresses as typed in flags: checked once, turned into gRPC targets."""

from __future__ import annotations

import pytest

from flowscope.common.addresses import check_dial_address, dial_target, listen_target


@pytest.mark.parametrize(
    ("typed", "target"),
    [(":4244", "[::]:4244"), ("localhost:4245", "localhost:4245"), ("[::1]:4244", "[::1]:4244")],
)
def test_listen_addresses(typed: str, target: str) -> None:
    assert listen_target(typed) == target


@pytest.mark.parametrize("typed", ["nonsense", "localhost", "host:70000", "host:http", "/run/x.sock", ""])
def test_bad_listen_addresses(typed: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        listen_target(typed)


def test_dial_addresses() -> None:
    assert dial_target("/run/flowscope/hubble.sock") == "unix:///run/flowscope/hubble.sock"
    assert dial_target("10.0.0.1:4244") == "10.0.0.1:4244"
    for good in ("10.0.0.1:4244", "unix:///run/a.sock", "/run/a.sock", "[fd00::1]:4244"):
        assert check_dial_address(good) == good
    for bad in ("foo", ":4244", "unix://", "host:99999"):
        with pytest.raises(ValueError):
            check_dial_address(bad)


def test_a_huge_address_is_quoted_short() -> None:
    with pytest.raises(ValueError) as caught:
        listen_target("x" * 60_000)
    assert len(str(caught.value)) < 200
