"""Durations as Go writes them (`5s`, `1m30s`, `1.5h`, `250ms`), read by one parser wherever a person types one:
the CLI's --since/--timeout flags and the agent's monitor aggregation interval take the same text, so they must
accept exactly the same spellings.

The grammar is Go's time.ParseDuration: an optional sign, then one or more decimal numbers each with a unit
(ns, us, ms, s, m, h; and micro written with either sign people type, U+00B5 `µ` or the Greek U+03BC `μ`), or
the bare `0`.
"""

from __future__ import annotations

import re

UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # µ, the micro sign
    "\u03bcs": 1e-6,  # μ, the Greek small letter mu: Go accepts both
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Longest units first, so `ms` is never read as `m` followed by a stray `s`.
_UNITS = "|".join(sorted(map(re.escape, UNIT_SECONDS), key=len, reverse=True))
_PART = re.compile(rf"(\d+(?:\.\d*)?|\.\d+)({_UNITS})")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (negative ones too, as Go reads them); ValueError when the text is not one."""
    body = text.strip()
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, position = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise ValueError(f"invalid duration {text!r} (use units such as 3s, 4m, 1h)")
    return sign * total
