"""`--metrics`: which metric handlers to run and their options, in Hubble's syntax.

Hubble takes `--metrics "flow:sourceContext=namespace|pod;destinationContext=namespace drop tcp"`: handlers
separated by spaces or commas, each optionally followed by ':' and its options, separated by ';', each
`key=value` or a bare `key` (a flag such as the dns handler's `query`). The same string works here, so a
Helm value or a script written for Hubble selects the same metrics. Everything is checked before the agent
starts: an unknown handler, a handler named twice or a malformed option is a MetricsOptionError whose message
is the one line the agent prints before refusing to start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_HANDLERS = "flow,drop,tcp,port-distribution,icmp,policy"  # Hubble's chart default, less dns and http


class MetricsOptionError(ValueError):
    """A `--metrics` value that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class HandlerSpec:
    """One handler asked for: its name and its options (keys as written, values "" for a bare flag)."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ";".join(f"{k}={v}" if v else k for k, v in self.options.items())


_TOKENS = re.compile(r"([\s,]+)")


def parse_metrics(text: str, known: frozenset[str] | set[str] = frozenset()) -> list[HandlerSpec]:
    """The handlers a `--metrics` value names, in order; a name not in `known` (when given) is refused.

    Commas separate handlers, except inside a handler's options where the next piece is no handler name:
    `flow:labelsContext=source_pod,destination_pod drop` keeps its label list whole, as Hubble reads it."""
    specs: list[HandlerSpec] = []
    for word in _words(text, known):
        name, _, rest = word.partition(":")
        if not name:
            raise MetricsOptionError(f"--metrics: {word!r} has options but no handler name")
        if known and name not in known:
            raise MetricsOptionError(f"--metrics: unknown handler {name!r} (known: {', '.join(sorted(known))})")
        options: dict[str, str] = {}
        for option in filter(None, (part.strip() for part in rest.split(";"))):
            key, equals, value = option.partition("=")
            key, value = key.strip(), value.strip()
            if not key or (equals and not value):
                raise MetricsOptionError(f"--metrics: option {option!r} of {name} must be key=value or a flag")
            if key in options:
                raise MetricsOptionError(f"--metrics: option {key} is given twice for {name}")
            options[key] = value
        if any(spec.name == name for spec in specs):
            raise MetricsOptionError(f"--metrics: handler {name} is named twice")
        specs.append(HandlerSpec(name, options))
    if not specs:
        raise MetricsOptionError("--metrics: name at least one handler (e.g. flow,drop,tcp)")
    return specs


def _words(text: str, known: frozenset[str] | set[str]) -> list[str]:
    """The text cut into one word per handler (name and options)."""
    words: list[str] = []
    separator = " "
    for token in _TOKENS.split(text.strip()):
        if not token:
            continue
        if _TOKENS.fullmatch(token):
            separator = token
            continue
        in_options = bool(words) and ":" in words[-1]
        continues = in_options and separator.strip() == "," and token.partition(":")[0] not in known
        if continues:
            words[-1] += "," + token
        else:
            words.append(token)
    return words
