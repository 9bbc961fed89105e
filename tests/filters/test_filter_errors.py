"""Malformed filters: FilterError (a ValueError) with a reason a person can act on."""

from __future__ import annotations

import pytest
from filter_cases import select

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.filters import FilterError


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"source_ip": ["10.0.0.300"]}, "invalid source IP filter: '10.0.0.300' is not an IP address"),
        ({"destination_ip": ["10.0.0.0/33"]}, "invalid destination IP filter: '10.0.0.0/33' is not a CIDR"),
        ({"destination_ip": ["fd00::/129"]}, "is not a CIDR"),
        ({"source_ip": [""]}, "is not an IP address"),
        ({"source_port": ["http"]}, "invalid source port filter: 'http' is not a port number"),
        ({"destination_port": ["65536"]}, "is not a port number (0-65535)"),
        ({"destination_port": ["-1"]}, "is not a port number"),
        ({"destination_port": [" 80"]}, "is not a port number"),
        ({"protocol": ["quic"]}, "unknown protocol 'quic'"),
        ({"source_pod": [""]}, "must be [namespace/][<name>]"),
        ({"destination_pod": ["a/b/c"]}, "one slash"),
        (
            {"source_label": ["app in (a"]},
            "invalid source label filter: 'app in (a': a list of values is missing",
        ),
        ({"source_label": ["k8s:reserved:world"]}, "is not a valid label key"),
        ({"destination_label": ["app=b c"]}, "invalid destination label filter"),
        ({"destination_label": ["app=bad value!"]}, "invalid destination label filter"),
        ({"source_label": ["=x"]}, "expected a label key"),
        ({"source_label": ["x>y"]}, "with an integer"),
        ({"source_cluster_name": [""]}, "must not be empty"),
        ({"node_name": [""]}, "invalid node name filter: empty pattern"),
        ({"node_name": ["a/b/c"]}, "too many slashes"),
        ({"node_name": ["node_1?"]}, "invalid node name filter 'node_1?'"),
        ({"node_name": ["node1.."]}, "invalid node name filter"),
        ({"uuid": ["not-a-uuid"]}, "invalid uuid filter: 'not-a-uuid' is not a uuid"),
        ({"source_fqdn": ["exa mple.com"]}, "invalid source FQDN filter"),
        ({"destination_fqdn": [""]}, "invalid destination FQDN filter"),
        ({"source_service": [""]}, "invalid source service filter"),
        ({"source_ip_xlated": ["nope"]}, "invalid source IP xlated filter"),
        ({"http_status_code": ["600"]}, "invalid http status code filter '600'"),
        ({"http_path": ["(unclosed"]}, "invalid http path filter '(unclosed': missing ): (unclosed"),
        ({"http_url": ["(?=lookahead)"]}, "invalid http url filter '(?=lookahead)': invalid perl operator"),
        ({"dns_query": [r"(a)\1"]}, "invalid escape sequence"),
        ({"dns_query": ["*bad"]}, "invalid dns query filter"),
        ({"node_labels": ["a in ()"]}, "invalid node labels filter"),
    ],
)
def test_reasons(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(FilterError) as raised:
        select([pb.FlowFilter(**fields)])  # type: ignore[arg-type]
    assert reason in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_blacklist_filters_are_checked_too() -> None:
    with pytest.raises(FilterError, match="unknown protocol"):
        select(blacklist=[pb.FlowFilter(protocol=["tcp6"])])
