"""Go durations, read once for every stage: the CLI's time flags and the agent's aggregation interval."""

from __future__ import annotations

import pytest

from flowscope.common.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3),
        ("4m", 240),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("250ms", 0.25),
        ("0", 0),
        ("2us", 2e-6),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 s", "1d", "s", "1h-2m", "abc"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("micro", ["\u00b5", "\u03bc"], ids=["micro-sign", "greek-mu"])
def test_both_micro_signs_as_go_reads_them(micro: str) -> None:
    assert parse_duration(f"3{micro}s") == pytest.approx(3e-6)
    assert parse_duration(f"1ms500{micro}s") == pytest.approx(1.5e-3)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("-1.5s", -1.5), ("+2m", 120), ("-0", 0), (".5s", 0.5), ("1.s", 1), ("1h2m3s4ms5us6ns", 3723.004005006)],
)
def test_signs_and_fractions_as_go_reads_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["+", "-", ".s", "1.5", "5sec", "1m 30s", "ms"])
def test_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
