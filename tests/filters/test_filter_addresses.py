"""source_ip / destination_ip (addresses and CIDRs, both families) and ip_version."""

from __future__ import annotations

import pytest
from filter_cases import only
from records import CLIENT_V4, CLIENT_V6, DNS_V4, SERVER_V4, WORLD_V4

from flowscope.api.flow import flow_pb2 as pb


def test_exact_ipv4_addresses() -> None:
    assert only(source_ip=[WORLD_V4]) == ["world"]
    expected = ["syn", "dns", "world", "ping", "denied", "kernel", "policy", "sctp", "fragment"]
    assert only(destination_ip=[SERVER_V4, DNS_V4]) == expected


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("source_ip", [CLIENT_V4], ["syn", "dns", "ping", "denied", "kernel", "policy", "sctp", "fragment"]),
        ("destination_ip", [DNS_V4], ["dns", "kernel", "fragment"]),
        ("source_ip", ["93.184.0.0/16"], ["world"]),
        (
            "source_ip",
            ["10.200.1.12/24"],
            ["syn", "synack", "dns", "ping", "denied", "kernel", "policy", "sctp", "fragment"],
        ),
        (
            "source_ip",
            ["0.0.0.0/0"],
            ["syn", "synack", "dns", "world", "ping", "denied", "kernel", "policy", "sctp", "fragment"],
        ),
        ("source_ip", [CLIENT_V6], ["ns6", "to_dns6"]),
        ("source_ip", ["fd00:200:1:0:0:0:0:11"], ["ns6", "to_dns6"]),
        ("destination_ip", ["fd00:200::/40"], ["pong6", "ns6", "to_dns6"]),
        ("destination_ip", ["fd00:200:2::/48"], ["to_dns6"]),
        ("source_ip", ["::/0"], ["pong6", "ns6", "to_dns6"]),
        ("source_ip", ["10.9.9.9", "fd00:200:1::12"], ["pong6"]),
    ],
)
def test_addresses_and_prefixes(field: str, values: list[str], expected: list[str]) -> None:
    assert only(**{field: values}) == expected


def test_frames_without_ip_never_match_an_address() -> None:
    assert "arp" not in only(source_ip=["0.0.0.0/0"]) + only(source_ip=["::/0"])


def test_ip_version() -> None:
    assert only(ip_version=[pb.IPv6]) == ["pong6", "ns6", "to_dns6"]
    assert only(ip_version=[pb.IP_NOT_USED]) == ["arp"]
    assert len(only(ip_version=[pb.IPv4, pb.IPv6])) == 13
