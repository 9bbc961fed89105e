"""Times in and out: Go-style durations (flowscope.common.durations reads them) and timestamps for
--since/--until/--timeout, and the layouts hubble prints flows with (--time-format), so that lines look the same
and copied timestamps parse back."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from google.protobuf.timestamp_pb2 import Timestamp

from flowscope.common.durations import parse_duration


def positive_duration(text: str) -> float:
    """An argparse type: a duration above zero, in seconds, refused in argparse's own one-line way."""
    seconds = non_negative_duration(text)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return seconds


def non_negative_duration(text: str) -> float:
    """An argparse type: a duration of zero (for "off") or more, in seconds."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return seconds


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ZONE = r"(?P<zone>Z|[+-]\d{2}:?\d{2})"
_FRACTION = r"(?:[.,](?P<frac>\d{1,9}))?"
_ABSOLUTE = [
    re.compile(r"^(?P<Y>\d{4})-(?P<M>\d{2})-(?P<D>\d{2})$"),
    re.compile(r"^(?P<Y>\d{4})-(?P<M>\d{2})-(?P<D>\d{2})T(?P<h>\d{2})" + _ZONE + "$"),
    re.compile(r"^(?P<Y>\d{4})-(?P<M>\d{2})-(?P<D>\d{2})T(?P<h>\d{2}):(?P<m>\d{2})" + _ZONE + "$"),
    re.compile(
        r"^(?P<Y>\d{4})-(?P<M>\d{2})-(?P<D>\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})" + _FRACTION + _ZONE + "?$"
    ),
    # RFC1123Z: Mon, 02 Jan 2006 15:04:05 -0700
    re.compile(
        r"^\w{3}, (?P<D>\d{2}) (?P<Mon>\w{3}) (?P<Y>\d{4}) (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2}) " + _ZONE + "$"
    ),
    # The Stamp family hubble prints by default (no year: the most recent such moment is meant).
    re.compile(r"^(?P<Mon>\w{3}) +(?P<D>\d{1,2}) (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})" + _FRACTION + "$"),
]


def parse_time(text: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """The moment --since/--until names: a duration back from now (`3s`, `4m`, `1h`) or an absolute time
    (2006-01-02, RFC3339 with any fraction, RFC1123Z, or hubble's StampMilli lines). Times without a zone are
    UTC, as hubble prints them."""
    try:
        return now() - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    stripped = text.strip()
    for pattern in _ABSOLUTE:
        match = pattern.match(stripped)
        if match:
            return _from_match(match.groupdict(), now())
    raise ValueError(f"cannot read {text!r} as a time (try 5m, 2h, 2024-05-01T10:00:00Z or RFC3339)")


def _from_match(parts: dict[str, str | None], now: datetime) -> datetime:
    def number(key: str) -> int:
        value = parts.get(key)
        return int(value) if value else 0

    month = number("M")
    if parts.get("Mon"):
        name = str(parts["Mon"]).capitalize()
        if name not in _MONTHS:
            raise ValueError(f"unknown month {parts['Mon']!r}")
        month = _MONTHS.index(name) + 1
    micros = int((parts.get("frac") or "0").ljust(9, "0")[:6])
    zone = _zone(parts.get("zone"))
    year = number("Y") or now.year
    moment = datetime(year, month, number("D"), number("h"), number("m"), number("s"), micros, zone)
    if not parts.get("Y") and moment > now:
        moment = moment.replace(year=year - 1)
    return moment.astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def to_timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


# --time-format names (hubble's, plus Go's other Stamp layouts), case-insensitive.
TIME_FORMATS = (
    "StampMilli",
    "Stamp",
    "StampMicro",
    "StampNano",
    "RFC3339",
    "RFC3339Milli",
    "RFC3339Micro",
    "RFC3339Nano",
    "RFC1123Z",
    "YearMonthDay",
    "YearMonthDayHour",
    "YearMonthDayHourMinute",
)


def time_format_name(text: str) -> str:
    """The canonical spelling of a --time-format name; ValueError for an unknown one."""
    for name in TIME_FORMATS:
        if name.lower() == text.lower():
            return name
    raise ValueError(f"unknown time format {text!r} (one of {', '.join(TIME_FORMATS)})")


def format_timestamp(stamp: Timestamp | None, layout: str = "StampMilli") -> str:
    """A timestamp in one of the --time-format layouts, in UTC as hubble prints it; `N/A` when unset."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return "N/A"
    moment, date, clock, stamp_prefix = _second(stamp.seconds)
    nanos = stamp.nanos
    match layout:
        case "Stamp":
            return stamp_prefix
        case "StampMicro":
            return f"{stamp_prefix}.{nanos // 1000:06d}"
        case "StampNano":
            return f"{stamp_prefix}.{nanos:09d}"
        case "RFC3339":
            return f"{date}T{clock}Z"
        case "RFC3339Milli":
            return f"{date}T{clock}{_trimmed_fraction(nanos // 1_000_000, 3)}Z"
        case "RFC3339Micro":
            return f"{date}T{clock}{_trimmed_fraction(nanos // 1000, 6)}Z"
        case "RFC3339Nano":
            return f"{date}T{clock}{_trimmed_fraction(nanos, 9)}Z"
        case "RFC1123Z":
            weekday = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[moment.weekday()]
            return f"{weekday}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} {clock} +0000"
        case "YearMonthDay":
            return date
        case "YearMonthDayHour":
            return f"{date}T{moment.hour:02d}Z"
        case "YearMonthDayHourMinute":
            return f"{date}T{moment.hour:02d}:{moment.minute:02d}Z"
        case _:
            return f"{stamp_prefix}.{nanos // 1_000_000:03d}"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> tuple[datetime, str, str, str]:
    """A second's moment, date, clock and Stamp prefix: flows come in time order, so one second's text serves
    every flow of that second (made per flow, it was a quarter of `observe -o compact`'s printing)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    return moment, date, clock, f"{_MONTHS[moment.month - 1]} {moment.day:>2} {clock}"


def _trimmed_fraction(value: int, digits: int) -> str:
    """Go's `.999` layouts: the fraction without trailing zeros, and no dot at all when it is zero."""
    text = f"{value:0{digits}d}".rstrip("0")
    return f".{text}" if text else ""


def format_duration(seconds: float) -> str:
    """A duration the way Go prints one rounded to the second (`2h3m4s`, `45s`, `1m0s`), for node ages."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
