"""Flags → GetFlowsRequest, compared with what hubble's CLI sends for the same flags."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

import flowscope.cli.observe
from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import UsageError
from flowscope.cli.main import build_parser
from flowscope.cli.observe.request import ALL_FLOWS, FIELD_MASK, HUBBLE_FIELD_MASK, build_request, raw_filters_yaml

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser([flowscope.cli.observe]).parse_args(["observe", *argv])


def request(*argv: str) -> observer_pb2.GetFlowsRequest:
    return build_request(parse(*argv), now=lambda: NOW)


def filters(*dicts: dict[str, object]) -> list[flow_pb2.FlowFilter]:
    return [flow_pb2.FlowFilter(**d) for d in dicts]  # type: ignore[arg-type]


def usage_error(*argv: str) -> str:
    with pytest.raises(UsageError) as caught:
        request(*argv)
    return caught.value.message


def flag_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as caught:
        parse(*argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- selectors ------------------------------------------------------------------------------------


def test_nothing_given_means_the_last_20() -> None:
    req = request()
    assert (req.number, req.first, req.follow) == (20, False, False)
    assert not req.whitelist and not req.blacklist


def test_observe_flows_is_the_same_command() -> None:
    assert build_request(parse("flows", "--last", "3")).number == 3


@pytest.mark.parametrize(
    ("argv", "number", "first", "follow"),
    [
        (["--last", "5"], 5, False, False),
        (["--first", "3"], 3, True, False),
        (["--all"], ALL_FLOWS, False, False),
        (["--follow"], 0, False, True),
        (["-f", "--last", "10"], 10, False, True),
    ],
)
def test_selectors(argv: list[str], number: int, first: bool, follow: bool) -> None:
    req = request(*argv)
    assert (req.number, req.first, req.follow) == (number, first, follow)


def test_since_and_until_replace_the_default_number() -> None:
    req = request("--since", "5m", "--until", "2024-05-01T11:59:00Z")
    assert req.number == 0
    assert req.since.ToDatetime(UTC) == NOW - timedelta(minutes=5)
    assert req.until.ToDatetime(UTC) == datetime(2024, 5, 1, 11, 59, tzinfo=UTC)


def test_until_is_ignored_when_following() -> None:
    assert not request("-f", "--until", "1h").HasField("until")


def test_last_with_since_is_sent_for_the_server_to_judge() -> None:
    req = request("--last", "5", "--since", "1h")
    assert req.number == 5 and req.HasField("since")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--first", "1", "--last", "1"], "cannot set both --first and --last"),
        (["--first", "1", "--all"], "cannot set both --first and --all"),
        (["--first", "1", "-f"], "cannot set both --first and --follow"),
        (["--last", "1", "--all"], "cannot set both --last and --all"),
        (["--since", "yesterday"], "failed to parse the since time"),
        (["--to-ip", "1.1.1.1", "--not"], "trailing --not found in the arguments"),
    ],
)
def test_invalid_combinations(argv: list[str], message: str) -> None:
    assert message in usage_error(*argv)


# --- filters --------------------------------------------------------------------------------------


def test_from_and_to_go_into_one_filter() -> None:
    req = request("--from-ip", "10.0.0.1", "--to-ip", "10.0.0.2")
    assert list(req.whitelist) == filters({"source_ip": ["10.0.0.1"], "destination_ip": ["10.0.0.2"]})


def test_either_end_is_two_filters_ored() -> None:
    req = request("--ip", "10.0.0.1", "--verdict", "DROPPED")
    assert list(req.whitelist) == filters(
        {"source_ip": ["10.0.0.1"], "verdict": [flow_pb2.DROPPED]},
        {"destination_ip": ["10.0.0.1"], "verdict": [flow_pb2.DROPPED]},
    )


def test_values_of_one_flag_are_ored_within_a_field() -> None:
    req = request("--from-port", "80", "--from-port", "443", "--protocol", "tcp")
    assert list(req.whitelist) == filters({"source_port": ["80", "443"], "protocol": ["tcp"]})


def test_namespace_becomes_a_pod_prefix_at_either_end() -> None:
    assert list(request("-n", "kube-system").whitelist) == filters(
        {"source_pod": ["kube-system/"]}, {"destination_pod": ["kube-system/"]}
    )


def test_namespace_prefixes_pods_without_one() -> None:
    assert list(request("--pod", "web", "--namespace", "shop").whitelist) == filters(
        {"source_pod": ["shop/web"]}, {"destination_pod": ["shop/web"]}
    )


def test_from_namespace_and_to_pod() -> None:
    req = request("--from-namespace", "a", "--to-pod", "b/db")
    assert list(req.whitelist) == filters({"source_pod": ["a/"], "destination_pod": ["b/db"]})


def test_all_namespaces() -> None:
    assert list(request("-A").whitelist) == filters({"source_pod": ["/"]}, {"destination_pod": ["/"]})
    assert list(request("--to-all-namespaces").whitelist) == filters({"destination_pod": ["/"]})


def test_not_sends_only_the_next_filter_to_the_blacklist() -> None:
    req = request("--not", "--verdict", "DROPPED", "--protocol", "udp", "--not", "--from-ip", "10.0.0.9")
    assert list(req.whitelist) == filters({"protocol": ["udp"]})
    assert list(req.blacklist) == filters({"verdict": [flow_pb2.DROPPED], "source_ip": ["10.0.0.9"]})


def test_not_with_either_end() -> None:
    req = request("--not", "--pod", "default/noisy")
    assert not req.whitelist
    assert list(req.blacklist) == filters({"source_pod": ["default/noisy"]}, {"destination_pod": ["default/noisy"]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("trace:to-endpoint", flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=0)),
        ("trace:from-network", flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=10)),
        ("trace:to-network", flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=11)),
        ("trace:to-stack", flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=3)),
        ("trace", flow_pb2.EventTypeFilter(type=4)),
        ("drop", flow_pb2.EventTypeFilter(type=1)),
        ("policy-verdict", flow_pb2.EventTypeFilter(type=5)),
        ("trace:7", flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=7)),
        ("129", flow_pb2.EventTypeFilter(type=129)),
    ],
)
def test_event_types(value: str, expected: flow_pb2.EventTypeFilter) -> None:
    assert list(request("-t", value).whitelist[0].event_type) == [expected]


def test_several_types_are_ored() -> None:
    req = request("--type", "drop", "--type", "policy-verdict")
    assert [t.type for t in req.whitelist[0].event_type] == [1, 5]


@pytest.mark.parametrize(
    ("argv", "field", "values"),
    [
        (["--tcp-flags", "syn,ack"], "tcp_flags", [flow_pb2.TCPFlags(SYN=True, ACK=True)]),
        (["--ip-version", "6"], "ip_version", [flow_pb2.IPv6]),
        (["-4"], "ip_version", [flow_pb2.IPv4]),
        (["--traffic-direction", "egress"], "traffic_direction", [flow_pb2.EGRESS]),
        (["--interface", "eth0"], "interface", [flow_pb2.NetworkInterface(name="eth0")]),
        (["--drop-reason-desc", "POLICY_DENIED"], "drop_reason_desc", [flow_pb2.POLICY_DENIED]),
        (["--reply"], "reply", [True]),
        (["--reply", "false"], "reply", [False]),
        (["--uuid", "abc"], "uuid", ["abc"]),
        (["--node-name", "node-*"], "node_name", ["node-*"]),
        (["--from-identity", "world"], "source_identity", [2]),
        (["--to-identity", "12345"], "destination_identity", [12345]),
        (["--from-label", "app=web"], "source_label", ["app=web"]),
        (["--verdict", "forwarded"], "verdict", [flow_pb2.FORWARDED]),
        (["--http-header", "x-id:7"], "http_header", [flow_pb2.HTTPHeader(key="x-id", value="7")]),
    ],
)
def test_single_filter_flags(argv: list[str], field: str, values: list[object]) -> None:
    whitelist = request(*argv).whitelist
    assert len(whitelist) == 1
    assert list(getattr(whitelist[0], field)) == values


def test_identity_and_port_at_either_end() -> None:
    assert list(request("--identity", "host").whitelist) == filters(
        {"source_identity": [1]}, {"destination_identity": [1]}
    )
    assert list(request("--port", "53").whitelist) == filters({"source_port": ["53"]}, {"destination_port": ["53"]})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--label", "a=b", "--from-label", "c=d"], "filters --label and --from-label cannot be combined"),
        (["--from-ip", "1.1.1.1", "--namespace", "x"], "cannot be combined"),
        (["--from-pod", "a", "-n", "x"], "filters --from-pod and --namespace cannot be combined"),
        (["--not", "--not", "--ip", "1.1.1.1"], "consecutive --not statements"),
        (["--type", "trace:sideways"], "unknown event sub-type 'sideways'"),
        (["--type", "nonsense"], "unknown event type 'nonsense'"),
        (["--verdict", "MAYBE"], "invalid --verdict value: MAYBE"),
        (["--tcp-flags", "syn,fly"], "unknown tcp flag: fly"),
        (["--traffic-direction", "up"], "invalid traffic direction"),
        (["--identity", "martian"], "invalid security identity"),
        (["--drop-reason-desc", "NO_SOCKET"], "invalid --drop-reason-desc value"),
        (["--namespace", "a", "--pod", "b/x"], "namespace conflict"),
        (["--last=-1"], "must not be negative"),
        (["--first", "many"], "expected a number, not 'many'"),
        (["-o", "yaml"], "invalid choice"),
        (["--time-format", "Kitchen"], "unknown time format"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_filter_flags_are_one_line_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in flag_error(capsys, *argv)


# --- raw filters and field masks ------------------------------------------------------------------


def test_raw_filters_are_appended() -> None:
    req = request(
        "--from-ip",
        "10.0.0.1",
        "--allowlist",
        '{"source_pod":["a/"]} {"destinationPort":["80"]}',
        "--denylist",
        '{"verdict":["DROPPED"]}',
    )
    assert list(req.whitelist) == filters(
        {"source_ip": ["10.0.0.1"]}, {"source_pod": ["a/"]}, {"destination_port": ["80"]}
    )
    assert list(req.blacklist) == filters({"verdict": [flow_pb2.DROPPED]})


def test_bad_raw_filter() -> None:
    assert "invalid --allowlist flag" in usage_error("--allowlist", '{"no_such_field": 1}')


def test_print_raw_filters_yaml() -> None:
    req = request("--from-ip", "1.2.3.4/16", "--not", "--from-port", "80")
    assert raw_filters_yaml(req) == (
        'allowlist:\n    - \'{"source_ip":["1.2.3.4/16"]}\'\ndenylist:\n    - \'{"source_port":["80"]}\'\n'
    )


def test_text_output_asks_for_the_fields_it_prints() -> None:
    paths = list(request().field_mask.paths)
    assert paths == list(FIELD_MASK)
    assert paths[: len(HUBBLE_FIELD_MASK)] == list(HUBBLE_FIELD_MASK)
    assert "flowscope" in paths  # kernel drop reasons and aggregate counts


def test_json_output_gets_everything_unless_asked() -> None:
    assert not request("-o", "json").HasField("field_mask")
    assert list(request("-o", "jsonpb", "--field-mask", "time,verdict").field_mask.paths) == [
        "time",
        "verdict",
    ]
    assert not request("--no-use-default-field-masks").HasField("field_mask")


def test_field_mask_rules() -> None:
    assert "compact output format is not compatible with custom field mask" in usage_error("--field-mask", "time")
    assert "invalid Flow field(s): nope" in usage_error("-o", "json", "--field-mask", "time,nope")


def test_last_and_first_say_they_count_each_node(capsys: pytest.CaptureFixture[str]) -> None:
    """Through a relay `--last 20` gives 20 flows of each node, as Hubble does: --help says so."""
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "the last N flows of each node" in text
    assert "the first N flows still stored, of each node" in text


def test_cel_expression_goes_into_the_filter_as_written() -> None:
    expression = "_flow.verdict == Verdict.DROPPED && _flow.l4.TCP.destination_port == 9000u"
    cel = flow_pb2.FlowFilter.Experimental(cel_expression=[expression])
    assert list(request("--cel-expression", expression).whitelist) == filters({"experimental": cel})
    assert list(request("--not", "--cel-expression", expression).blacklist) == filters({"experimental": cel})
