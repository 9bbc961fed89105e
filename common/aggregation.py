"""Monitor aggregation settings as people write them (Cilium's flag values) and as the datapath holds them.

    --monitor-aggregation           none|disabled|lowest|low|medium|max|maximum, or 0..4   (default medium)
    --monitor-aggregation-interval  a duration: 5s, 500ms, 1m                              (default 5s)
    --monitor-aggregation-flags     TCP flags: syn,fin,rst (default), any of fin syn rst psh ack urg ece cwr, all

The agent's flags (cli/), its settings at run time (observer/) and `flowscope config set` (cli/) share these
keys, defaults and parsers, so all of them accept exactly the same values and say the same thing about the
wrong ones. The defaults are AggregationSettings' field defaults, written nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from flowscope.common.durations import parse_duration

LEVELS = {"none": 0, "disabled": 0, "lowest": 1, "low": 2, "medium": 3, "max": 4, "maximum": 4}
LEVEL_NAMES = {0: "none", 1: "lowest", 2: "low", 3: "medium", 4: "maximum"}
TCP_FLAGS = {"syn": 0x02, "fin": 0x01, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80}
ALL_FLAGS = 0xFF
MAX_INTERVAL_MS = 2**32 - 1  # struct fs_config.report_interval_ms is a __u32

LEVEL_KEY = "monitor-aggregation"
INTERVAL_KEY = "monitor-aggregation-interval"
FLAGS_KEY = "monitor-aggregation-flags"
KEYS = (LEVEL_KEY, INTERVAL_KEY, FLAGS_KEY)


def parse_level(text: str) -> int:
    value = text.strip().lower()
    if value in LEVELS:
        return LEVELS[value]
    if value.isdigit() and int(value) in LEVEL_NAMES:
        return int(value)
    raise ValueError(f"monitor aggregation level {text!r}: one of {', '.join(LEVELS)}, or 0 to 4")


def parse_interval_ms(text: str) -> int:
    """A Go duration ("5s", "1m30s", "250ms") in whole milliseconds, at least 1."""
    try:
        ms = parse_duration(text) * 1000
    except ValueError:
        raise ValueError(f"monitor aggregation interval {text!r}: a duration such as 5s, 500ms or 1m") from None
    if not 1 <= ms <= MAX_INTERVAL_MS:
        raise ValueError(f"monitor aggregation interval {text!r}: between 1ms and {MAX_INTERVAL_MS // 3_600_000}h")
    return round(ms)


def parse_flags(text: str) -> int:
    words = [w for w in re.split(r"[\s,|]+", text.strip().lower()) if w]
    if words == ["all"]:
        return ALL_FLAGS
    mask = 0
    for word in words:
        if word not in TCP_FLAGS:
            raise ValueError(f"monitor aggregation flag {word!r}: one of {', '.join(TCP_FLAGS)}, or all")
        mask |= TCP_FLAGS[word]
    if not words:
        raise ValueError("monitor aggregation flags: name at least one TCP flag (e.g. syn,fin,rst), or all")
    return mask


def format_flags(mask: int) -> str:
    if mask == ALL_FLAGS:
        return "all"
    return ",".join(name for name, bit in TCP_FLAGS.items() if mask & bit)


def format_interval(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


PARSERS: dict[str, Callable[[str], int]] = {
    LEVEL_KEY: parse_level,
    INTERVAL_KEY: parse_interval_ms,
    FLAGS_KEY: parse_flags,
}
_FIELDS = {LEVEL_KEY: "level", INTERVAL_KEY: "interval_ms", FLAGS_KEY: "flags"}  # AggregationSettings' fields


@dataclass(frozen=True)
class AggregationSettings:
    """The three settings, in the datapath's numbers; the defaults are Cilium's."""

    level: int = LEVELS["medium"]
    interval_ms: int = 5000
    flags: int = TCP_FLAGS["syn"] | TCP_FLAGS["fin"] | TCP_FLAGS["rst"]

    @classmethod
    def parse(cls, level: str, interval: str, flags: str) -> AggregationSettings:
        return cls(parse_level(level), parse_interval_ms(interval), parse_flags(flags))

    def values(self) -> dict[str, str]:
        """The settings as `flowscope config get` shows them (and `set` and the agent's flags take them back)."""
        return {
            LEVEL_KEY: LEVEL_NAMES[self.level],
            INTERVAL_KEY: format_interval(self.interval_ms),
            FLAGS_KEY: format_flags(self.flags),
        }

    def with_value(self, key: str, text: str) -> AggregationSettings:
        """These settings with one changed, by its key; ValueError for an unknown key or bad value."""
        if key not in PARSERS:
            raise ValueError(f"no setting {key!r}: one of {', '.join(KEYS)}")
        return replace(self, **{_FIELDS[key]: PARSERS[key](text)})

    def runtime(self) -> dict[str, int]:
        """The fields of the datapath's runtime config (struct fs_config) these settings fill."""
        return {"aggregation": self.level, "report_interval_ms": self.interval_ms, "report_flags": self.flags}


DEFAULTS = AggregationSettings().values()  # as the agent's flags and `config get` write them
