"""`--metrics` in Hubble's syntax: handlers and options read as Hubble reads them, and a bad value refused
with one line before the agent starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowscope.observer.metrics.options import HandlerSpec, MetricsOptionError, parse_metrics
from flowscope.observer.metrics.registry import HANDLERS, check_metrics
from flowscope.observer.metrics.server import split_address

KNOWN = frozenset(HANDLERS)


def test_handlers_separated_by_spaces_and_commas() -> None:
    assert parse_metrics("flow drop,tcp  port-distribution, icmp", KNOWN) == [
        HandlerSpec("flow"),
        HandlerSpec("drop"),
        HandlerSpec("tcp"),
        HandlerSpec("port-distribution"),
        HandlerSpec("icmp"),
    ]


def test_options_after_a_colon_separated_by_semicolons() -> None:
    specs = parse_metrics("flow:sourceContext=namespace|pod;destinationContext=namespace dns:query;ignoreAAAA", KNOWN)
    assert specs == [
        HandlerSpec("flow", {"sourceContext": "namespace|pod", "destinationContext": "namespace"}),
        HandlerSpec("dns", {"query": "", "ignoreAAAA": ""}),
    ]


def test_a_label_list_keeps_its_commas_until_the_next_handler() -> None:
    specs = parse_metrics("flow:labelsContext=source_pod,destination_pod,traffic_direction,drop", KNOWN)
    assert specs == [
        HandlerSpec("flow", {"labelsContext": "source_pod,destination_pod,traffic_direction"}),
        HandlerSpec("drop"),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("flw", "unknown handler 'flw'"),
        ("flow,flow", "handler flow is named twice"),
        ("flow:sourceContext=", "must be key=value or a flag"),
        ("flow:sourceContext=pod;sourceContext=ip", "sourceContext is given twice"),
        ("flow:sourceContext=bogus", "unknown context 'bogus'"),
        ("flow:sourceContext=pod|bogus", "unknown context 'bogus'"),
        ("flow:labelsContext=source_pid", "unknown labelsContext label 'source_pid'"),
        ("tcp:query", "tcp has no option 'query'"),
        ("flow:sourceEgressContext=pod", "sourceEgressContext is not supported"),
        (":x", "no handler name"),
        ("  ", "name at least one handler"),
    ],
)
def test_bad_values_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(MetricsOptionError, match=says.replace("|", r"\|")):
        check_metrics(text)


def test_every_context_option_is_accepted() -> None:
    check_metrics(
        "flow:sourceContext=identity|namespace|pod|pod-short|pod-name|dns|ip|reserved-identity|workload-name|app;"
        "destinationContext=app|pod;labelsContext=source_ip,source_namespace,source_pod,source_workload,"
        "source_workload_kind,source_app,destination_ip,destination_namespace,destination_pod,"
        "destination_workload,destination_workload_kind,destination_app,traffic_direction "
        "drop tcp port-distribution icmp policy dns:query;ignoreAAAA http"
    )


@pytest.mark.parametrize(("address", "split"), [(":9965", ("0.0.0.0", 9965)), ("[::1]:9965", ("::1", 9965))])
def test_metrics_addresses(address: str, split: tuple[str, int]) -> None:
    assert split_address(address) == split


@pytest.mark.parametrize("address", ["9965", ":port", ":70000"])
def test_bad_metrics_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address(address)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--metrics-address", ":9965", "--metrics", "flow:sourceContext=podd"], "unknown context 'podd'"),
        (["--metrics-address", "9965"], "give HOST:PORT"),
        (["--metrics", "flow"], "--metrics needs --metrics-address"),
    ],
)
def test_the_agent_refuses_to_start_with_one_line(flags: list[str], says: str, tmp_path: Path) -> None:
    agent = Path(sys.executable).parent / "flowscope"
    result = subprocess.run(
        [str(agent), "agent", "--socket", str(tmp_path / "s.sock"), "--listen-address", "", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowscope agent: ") and says in lines[0], result.stderr
