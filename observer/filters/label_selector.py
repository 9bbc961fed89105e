"""Kubernetes label selectors with Cilium's label sources, as Hubble accepts them in label filters.

Syntax (Kubernetes' `labels.Parse`): requirements separated by commas, each one of `key`, `!key`, `key=value`
(or `==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key>1`, `key<1`; an empty selector selects
everything. Keys may carry a Cilium source: `k8s:app=client`, `reserved:world`; a key without one matches
labels of any source, as Hubble's translation to `any:` does.

Labels are Cilium's strings: "k8s:app=client", "reserved:world" (source, key, optional value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from flowscope.observer.filters.base import FilterError

ANY_SOURCE = "any"

_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|>|<|[^\s=!(),<>]+)")
_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SYMBOLS = frozenset({"!=", "==", "=", "!", ",", "(", ")", ">", "<"})
_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "in": "in", "notin": "notin", ">": "gt", "<": "lt"}


@dataclass(frozen=True)
class Requirement:
    source: str  # ANY_SOURCE matches labels of every source
    key: str
    operator: str  # exists, !exists, =, !=, in, notin, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Iterable[tuple[str, str, str]]) -> bool:
        found = [value for source, key, value in labels if key == self.key and self.source in (ANY_SOURCE, source)]
        op = self.operator
        if op == "exists":
            return bool(found)
        if op == "!exists":
            return not found
        if op in ("=", "in"):
            return bool(found) and found[0] in self.values
        if op in ("!=", "notin"):
            return not found or found[0] not in self.values
        if not found or not re.fullmatch(r"-?\d+", found[0]):
            return False
        (bound,) = self.values
        return int(found[0]) > int(bound) if op == "gt" else int(found[0]) < int(bound)


@dataclass(frozen=True)
class Selector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Iterable[str]) -> bool:
        parsed = [parse_label(label) for label in labels]
        return all(requirement.matches(parsed) for requirement in self.requirements)


def parse_label(label: str) -> tuple[str, str, str]:
    """A Cilium label string as (source, key, value); a label without source has the "unspec" source."""
    source, colon, rest = label.partition(":")
    if not colon or "=" in source:
        source, rest = "unspec", label
    key, _, value = rest.partition("=")
    return source, key, value


def parse_selector(text: str) -> Selector:
    """Parse one selector; FilterError says what is wrong with it."""
    tokens = _tokenize(text)
    requirements = []
    pos = 0
    while pos < len(tokens):
        requirement, pos = _requirement(tokens, pos, text)
        requirements.append(requirement)
        if pos < len(tokens):
            if tokens[pos] != ",":
                raise FilterError(f"{text!r}: expected ',' or the end after a requirement, found {tokens[pos]!r}")
            pos += 1
            if pos == len(tokens):
                raise FilterError(f"{text!r}: a requirement is missing after the last ','")
    return Selector(text, tuple(requirements))


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:  # pragma: no cover - every character is some token
            raise FilterError(f"{text!r}: cannot read it from position {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _requirement(tokens: list[str], pos: int, text: str) -> tuple[Requirement, int]:
    negated = tokens[pos] == "!"
    if negated:
        pos += 1
    if pos >= len(tokens) or not _is_word(tokens[pos]):
        found = repr(tokens[pos]) if pos < len(tokens) else "the end"
        raise FilterError(f"{text!r}: expected a label key, found {found}")
    source, key = _key(tokens[pos], text)
    pos += 1
    at_end = pos >= len(tokens) or tokens[pos] == ","
    if negated or at_end:
        if negated and not at_end:
            raise FilterError(f"{text!r}: '!{key}' takes no operator or value")
        return Requirement(source, key, "!exists" if negated else "exists"), pos
    operator = _OPERATORS.get(tokens[pos])
    if operator is None:
        raise FilterError(f"{text!r}: expected an operator (=, ==, !=, in, notin, >, <) after {key!r}")
    pos += 1
    if operator in ("in", "notin"):
        values, pos = _value_list(tokens, pos, text)
    else:
        value = ""  # `key=` (at a comma or the end) asks for an empty value
        if pos < len(tokens) and _is_word(tokens[pos]):
            value, pos = tokens[pos], pos + 1
        if operator in ("gt", "lt") and not re.fullmatch(r"-?\d+", value):
            raise FilterError(f"{text!r}: '>' and '<' compare {key!r} with an integer, not {value!r}")
        values = frozenset({value})
    for value in values:
        _check_value(value, text)
    return Requirement(source, key, operator, values), pos


def _value_list(tokens: list[str], pos: int, text: str) -> tuple[frozenset[str], int]:
    if pos >= len(tokens) or tokens[pos] != "(":
        raise FilterError(f"{text!r}: 'in' and 'notin' need a list of values in parentheses")
    values: list[str] = []
    pos += 1
    expect_value = True
    while pos < len(tokens) and tokens[pos] != ")":
        token = tokens[pos]
        if token == ",":
            if expect_value:
                values.append("")
            expect_value = True
        elif _is_word(token) and expect_value:
            values.append(token)
            expect_value = False
        else:
            raise FilterError(f"{text!r}: unexpected {token!r} in a list of values")
        pos += 1
    if pos >= len(tokens):
        raise FilterError(f"{text!r}: a list of values is missing its ')'")
    if expect_value and values:
        values.append("")
    if not values:
        raise FilterError(f"{text!r}: 'in' and 'notin' need at least one value")
    return frozenset(values), pos + 1


def _is_word(token: str) -> bool:
    """Keys and values: anything but symbols and the keywords `in` and `notin`."""
    return token not in _SYMBOLS and token not in ("in", "notin")


def _key(token: str, text: str) -> tuple[str, str]:
    source, colon, key = token.partition(":")
    if not colon:
        source, key = ANY_SOURCE, token
    prefix, slash, name = key.rpartition("/")
    valid = (
        bool(name)
        and len(name) <= 63
        and _NAME.match(name) is not None
        and (not slash or (0 < len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None))
        and (not colon or (_NAME.match(source) is not None and bool(source)))
    )
    if not valid:
        raise FilterError(
            f"{text!r}: {token!r} is not a valid label key ([source:][prefix/]name; the name is at most 63 "
            "characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
        )
    return source, key


def _check_value(value: str, text: str) -> None:
    if len(value) > 63 or _NAME.match(value) is None:
        raise FilterError(
            f"{text!r}: {value!r} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)"
        )
