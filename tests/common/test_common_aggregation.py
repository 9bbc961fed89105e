"""Monitor aggregation settings: Cilium's flag values, parsed once for the agent's flags and for `config set`."""

from __future__ import annotations

import pytest

from flowscope.common.aggregation import (
    AggregationSettings,
    format_flags,
    format_interval,
    parse_flags,
    parse_interval_ms,
    parse_level,
)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("none", 0),
        ("disabled", 0),
        ("lowest", 1),
        ("low", 2),
        ("medium", 3),
        ("max", 4),
        ("maximum", 4),
        ("LoW", 2),
        ("3", 3),
        ("0", 0),
    ],
)
def test_levels(text: str, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["disable", "5", "-1", "", "high"])
def test_bad_levels_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="one of none, disabled, lowest, low, medium, max, maximum, or 0 to 4"):
        parse_level(text)


@pytest.mark.parametrize(
    ("text", "ms"), [("5s", 5000), ("500ms", 500), ("1m30s", 90_000), ("1.5s", 1500), ("2h", 7_200_000)]
)
def test_intervals(text: str, ms: int) -> None:
    assert parse_interval_ms(text) == ms
    assert parse_interval_ms(format_interval(ms)) == ms


@pytest.mark.parametrize("micro", ["\u00b5", "\u03bc"], ids=["micro-sign", "greek-mu"])
def test_intervals_read_durations_as_the_cli_does(micro: str) -> None:
    assert parse_interval_ms(f"1s5000{micro}s") == 1005


@pytest.mark.parametrize("text", ["5", "5 s", "s", "0s", "100us", "-1s", "2000h"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(ValueError, match="monitor aggregation interval"):
        parse_interval_ms(text)


def test_flags() -> None:
    assert parse_flags("syn,fin,rst") == 0x07
    assert parse_flags("SYN | psh") == 0x0A
    assert parse_flags("all") == 0xFF
    assert format_flags(0x07) == "syn,fin,rst" and format_flags(0xFF) == "all"
    for bad in ("", "syn,bogus", "all,syn"):
        with pytest.raises(ValueError, match="flag"):
            parse_flags(bad)


def test_settings_change_one_at_a_time_by_their_flag_names() -> None:
    settings = AggregationSettings()
    assert settings.values() == {
        "monitor-aggregation": "medium",
        "monitor-aggregation-interval": "5s",
        "monitor-aggregation-flags": "syn,fin,rst",
    }
    changed = settings.with_value("monitor-aggregation", "none").with_value("monitor-aggregation-interval", "1s")
    assert changed.runtime() == {"aggregation": 0, "report_interval_ms": 1000, "report_flags": 0x07}
    with pytest.raises(ValueError, match="no setting 'aggregation'"):
        settings.with_value("aggregation", "none")
