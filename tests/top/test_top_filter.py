"""The live filter of `flowscope top`: read by observe's own flag and request code, with observe's errors."""

from __future__ import annotations

import argparse

import pytest

from flowscope.api.flow import flow_pb2
from flowscope.cli.errors import UsageError
from flowscope.cli.main import build_parser
from flowscope.cli.top.livefilter import FilterError, LiveFilter, initial_request, initial_text


def top_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["top", *argv])


def observe_request_filters(*argv: str) -> tuple[list[flow_pb2.FlowFilter], list[flow_pb2.FlowFilter]]:
    from flowscope.cli.observe.request import build_request

    request = build_request(build_parser().parse_args(["observe", "-f", *argv]))
    return list(request.whitelist), list(request.blacklist)


def test_the_command_line_filters_become_the_editable_line() -> None:
    args = top_args(
        "-n", "default", "--not", "--verdict", "FORWARDED", "--reply", "--allowlist", '{"source_pod":["a b"]}'
    )
    text = initial_text(args)
    assert text == '--namespace default --not --verdict FORWARDED --reply true --allowlist \'{"source_pod":["a b"]}\''
    live = LiveFilter(args).request(text)
    first = initial_request(args)
    assert (list(live.whitelist), list(live.blacklist)) == (list(first.whitelist), list(first.blacklist))


def test_no_filters_is_an_empty_line() -> None:
    assert initial_text(top_args()) == ""
    request = LiveFilter(top_args()).request("")
    assert not request.whitelist and not request.blacklist and request.follow


@pytest.mark.parametrize(
    "flags",
    [
        "--from-pod default/client --protocol tcp",
        "--namespace web --to-port 80 --not --type trace:to-stack",
        "--verdict DROPPED --drop-reason-desc POLICY_DENIED",
        "--ip 10.0.0.1 --identity world",
    ],
)
def test_a_typed_filter_asks_what_observe_would(flags: str) -> None:
    request = LiveFilter(top_args()).request(flags)
    assert (list(request.whitelist), list(request.blacklist)) == observe_request_filters(*flags.split())
    assert request.follow and request.number == 0 and request.HasField("since")  # the last 40 s, then follow


def test_resuming_asks_for_new_flows_only() -> None:
    request = LiveFilter(top_args()).request("--verdict DROPPED", backfill=None)
    assert request.follow and request.number == 0 and not request.HasField("since")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("--verdict DROP", "argument --verdict: invalid --verdict value: DROP"),
        ("--verdict", "argument --verdict: expected one argument"),
        ("--verd", "unrecognized arguments: --verd"),
        ("client", "unrecognized arguments: client"),
        ("--not", "trailing --not found in the arguments"),
        ("--not --not --ip 1.2.3.4", "argument --not: consecutive --not statements"),
        ("--from-pod 'default/cli", "no closing quotation"),
        ("--ip 10.0.0.1 --from-ip 10.0.0.2", "argument --from-ip: filters --from-ip and --ip cannot be combined"),
        ("--type trace:nowhere", "argument -t/--type: unknown event sub-type 'nowhere'"),
        ("--allowlist {", "invalid --allowlist flag: failed to decode '{'"),
    ],
)
def test_errors_are_observes_own(text: str, error: str) -> None:
    live = LiveFilter(top_args())
    message = live.error(text)
    assert message is not None and message.startswith(error), message
    with pytest.raises(FilterError):
        live.request(text)


def test_valid_text_has_no_error() -> None:
    assert LiveFilter(top_args()).error("--to-namespace web -t trace:to-endpoint") is None


def test_first_request_backfills_unless_told_otherwise() -> None:
    assert initial_request(top_args()).HasField("since")
    last = initial_request(top_args("--last", "100"))
    assert (last.number, last.follow, last.HasField("since")) == (100, True, False)
    with pytest.raises(UsageError, match="--first does not go with top"):
        initial_request(top_args("--first", "5"))
    with pytest.raises(UsageError, match="--until does not go with top"):  # it ends the flows as --first does
        initial_request(top_args("--until", "1m"))


def test_the_editable_line_names_every_flag_as_observe_spells_it_long() -> None:
    """Short flags come back long, switches without a value, an optional value as given or as its default."""
    args = top_args("-4", "-t", "trace:to-stack", "--reply", "false", "-A", "--to-port", "80", "--reply")
    assert initial_text(args) == "--ipv4 --type trace:to-stack --reply false --all-namespaces --to-port 80 --reply true"
    live = LiveFilter(args).request(initial_text(args))
    first = initial_request(args)
    assert (list(live.whitelist), list(live.blacklist)) == (list(first.whitelist), list(first.blacklist))
