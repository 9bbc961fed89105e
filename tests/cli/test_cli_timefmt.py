"""Durations and times in (--since, --until, --timeout) and out (--time-format)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from flowscope.cli.timefmt import (
    format_duration,
    format_timestamp,
    non_negative_duration,
    parse_time,
    positive_duration,
    time_format_name,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("3s", NOW - timedelta(seconds=3)),
        ("1h", NOW - timedelta(hours=1)),
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
        ("2024-04-30T10Z", datetime(2024, 4, 30, 10, tzinfo=UTC)),
        ("2024-04-30T10:20Z", datetime(2024, 4, 30, 10, 20, tzinfo=UTC)),
        ("2024-04-30T10:20:30Z", datetime(2024, 4, 30, 10, 20, 30, tzinfo=UTC)),
        ("2024-04-30T10:20:30.123456789Z", datetime(2024, 4, 30, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-04-30T12:20:30+02:00", datetime(2024, 4, 30, 10, 20, 30, tzinfo=UTC)),
        ("Tue, 30 Apr 2024 10:20:30 -0100", datetime(2024, 4, 30, 11, 20, 30, tzinfo=UTC)),
        ("Apr 30 10:20:30.500", datetime(2024, 4, 30, 10, 20, 30, 500000, tzinfo=UTC)),
        ("Dec 31 23:00:00.000", datetime(2023, 12, 31, 23, tzinfo=UTC)),  # no year: the last such moment
    ],
)
def test_times(text: str, moment: datetime) -> None:
    assert parse_time(text, now=lambda: NOW) == moment


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "Foo 1 10:00:00"])
def test_not_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, now=lambda: NOW)


STAMP = Timestamp(seconds=1704067205, nanos=120000000)  # 2024-01-01T00:00:05.12Z, a Monday


@pytest.mark.parametrize(
    ("layout", "text"),
    [
        ("StampMilli", "Jan  1 00:00:05.120"),
        ("Stamp", "Jan  1 00:00:05"),
        ("StampMicro", "Jan  1 00:00:05.120000"),
        ("StampNano", "Jan  1 00:00:05.120000000"),
        ("RFC3339", "2024-01-01T00:00:05Z"),
        ("RFC3339Milli", "2024-01-01T00:00:05.12Z"),
        ("RFC3339Micro", "2024-01-01T00:00:05.12Z"),
        ("RFC3339Nano", "2024-01-01T00:00:05.12Z"),
        ("RFC1123Z", "Mon, 01 Jan 2024 00:00:05 +0000"),
        ("YearMonthDay", "2024-01-01"),
        ("YearMonthDayHour", "2024-01-01T00Z"),
        ("YearMonthDayHourMinute", "2024-01-01T00:00Z"),
    ],
)
def test_time_formats(layout: str, text: str) -> None:
    assert format_timestamp(STAMP, layout) == text


def test_whole_seconds_drop_the_fraction_like_go() -> None:
    assert format_timestamp(Timestamp(seconds=1704067205), "RFC3339Nano") == "2024-01-01T00:00:05Z"


def test_unset_time() -> None:
    assert format_timestamp(Timestamp()) == "N/A"
    assert format_timestamp(None) == "N/A"


def test_time_format_names_ignore_case() -> None:
    assert time_format_name("rfc3339milli") == "RFC3339Milli"
    with pytest.raises(ValueError):
        time_format_name("Kitchen")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (60, "1m0s"), (7384, "2h3m4s"), (59.6, "1m0s")])
def test_durations_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_duration_flags_refuse_what_they_cannot_mean() -> None:
    assert non_negative_duration("0") == 0.0  # "off"
    assert positive_duration("250ms") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="must be positive"):
        positive_duration("0")
    with pytest.raises(argparse.ArgumentTypeError, match="must not be negative"):
        non_negative_duration("-1s")
