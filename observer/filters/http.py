"""http_status_code, http_method, http_path, http_url, http_header: Hubble's HTTP filters.

Each is Hubble's (cilium pkg/hubble/filters/http.go), over the facts of one HTTP message, however they are
read: from an L7 store entry (the agent's records) or from a decoded flow's `l7.http` (flows read from a file,
observer/filters/messages.py). A flow without an HTTP record matches none of them.

- status: `404` matches that code, `5+` / `40+` any code starting with those digits; only responses have a code.
- method: case-insensitive; a response carries its request's method, so `--http-method GET` shows both.
- url, path: RE2 regular expressions searched (not anchored) in the URL as on the request line, or in its
  path alone (percent-decoded); a URL that is no request URI has no path and matches no path filter.
- header: the message has a header of that name (case-insensitive: HTTP names are, and Hubble's come
  lower-cased from its proxy) with exactly that value.

As in Hubble, asking for HTTP fields together with event types that exclude L7 (`-t trace --http-status 500`)
is refused: no flow could match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters import l7_rows
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate
from flowscope.observer.filters.regex import Regex, compile_regex, shown

_STATUS_FULL = re.compile(r"[1-5][0-9]{2}")
_STATUS_PREFIX = re.compile(r"([1-5][0-9]?)\+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_DISTINCT = 4096  # texts whose regex answer a filter remembers (names, URLs)


@dataclass(frozen=True)
class HttpFacts:
    """What the HTTP filters test of one message: a request's method and url, a response's code (and, once
    paired, its request's method and url), the headers kept."""

    code: int
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]


HttpTest = Callable[[HttpFacts], bool]


def facts_of_entry(entry: l7_rows.L7Record) -> HttpFacts | None:
    if entry.kind != "http":
        return None
    return HttpFacts(entry.http_code, entry.http_method, entry.http_url, tuple(entry.http_headers))


def facts_of_flow(flow: flow_pb2.Flow) -> HttpFacts | None:
    if flow.l7.WhichOneof("record") != "http":
        return None
    http = flow.l7.http
    return HttpFacts(http.code, http.method, http.url, tuple((h.key, h.value) for h in http.headers))


def url_path(url: str) -> str | None:
    """The path of a request URI, percent-decoded, as Go's url.ParseRequestURI gives it; None if it is none.

    `/a/b?q` and `http://host/a/b?q` have the path `/a/b`; `http://host` and an opaque `mailto:x` have "";
    anything else (`a/b`, "") is no request URI.
    """
    if url.startswith("/") or url == "*":
        return unquote(url.partition("?")[0])
    scheme, colon, rest = url.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return None
    rest = rest.partition("?")[0]
    if rest.startswith("//"):
        authority_end = rest.find("/", 2)
        return "" if authority_end < 0 else unquote(rest[authority_end:])
    return unquote(rest) if rest.startswith("/") else ""


def _checked_l7_event_types(ff: flow_pb2.FlowFilter, what: str) -> None:
    """Hubble's rule: HTTP fields need the event type filter, if any, to admit L7 events."""
    if ff.event_type and not any(t.type == l7_rows.EVENT_L7 for t in ff.event_type):
        raise FilterError(f"filtering by {what} requires the event type filter to only match 'l7' events")


def _status_test(values: Iterable[str]) -> HttpTest:
    full: set[str] = set()
    prefixes: list[str] = []
    for value in values:
        if _STATUS_FULL.fullmatch(value):
            full.add(value)
        elif prefix := _STATUS_PREFIX.fullmatch(value):
            prefixes.append(prefix.group(1))
        else:
            raise FilterError(
                f"invalid http status code filter {shown(value)}: use a code like 404 or a prefix like 5+"
            )
    starts = tuple(prefixes)

    def matches(facts: HttpFacts) -> bool:
        code = f"{facts.code:03d}"
        return facts.code != 0 and (code in full or code.startswith(starts))

    return matches


def _method_test(values: Iterable[str]) -> HttpTest:
    wanted = {value.casefold() for value in values}
    return lambda facts: bool(facts.method) and facts.method.casefold() in wanted


def _url_test(values: Iterable[str]) -> HttpTest:
    searched = searcher([compile_regex(value, "http url") for value in values])
    return lambda facts: bool(facts.url) and searched(facts.url)


def _path_test(values: Iterable[str]) -> HttpTest:
    searched = searcher([compile_regex(value, "http path") for value in values])

    @lru_cache(maxsize=_DISTINCT)
    def path_matches(url: str) -> bool:
        path = url_path(url)
        return path is not None and searched(path)

    return lambda facts: bool(facts.url) and path_matches(facts.url)


def searcher(regexes: list[Regex]) -> Callable[[str], bool]:
    """Whether any of the expressions is found in a text, remembered for the last texts asked: L7 messages
    repeat their names and URLs, and a regular expression costs far more than a dictionary look-up."""

    @lru_cache(maxsize=_DISTINCT)
    def found(text: str) -> bool:
        return any(regex.search(text) for regex in regexes)

    return found


def _header_test(values: Iterable[flow_pb2.HTTPHeader]) -> HttpTest:
    wanted = {(header.key.casefold(), header.value) for header in values}
    return lambda facts: any((key.casefold(), value) in wanted for key, value in facts.headers)


_FIELDS: tuple[tuple[str, str, Callable[..., HttpTest]], ...] = (
    ("http_status_code", "http status code", _status_test),
    ("http_method", "http method", _method_test),
    ("http_path", "http path", _path_test),
    ("http_url", "http url", _url_test),
    ("http_header", "http headers", _header_test),
)


def http_tests(ff: flow_pb2.FlowFilter) -> list[HttpTest]:
    """One test per HTTP field the filter sets (values checked here, FilterError if one is malformed)."""
    tests = []
    for field, what, compile_test in _FIELDS:
        values = getattr(ff, field)
        if len(values):
            _checked_l7_event_types(ff, what)
            tests.append(compile_test(values))
    return tests


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    return [l7_rows.matching(ctx.l7, facts_of_entry, test) for test in http_tests(ff)]


def flow_predicates(ff: flow_pb2.FlowFilter) -> list[Callable[[flow_pb2.Flow], bool]]:
    """The same tests over decoded flows (observer/filters/messages.py)."""

    def on_flows(test: HttpTest) -> Callable[[flow_pb2.Flow], bool]:
        def matches(flow: flow_pb2.Flow) -> bool:
            facts = facts_of_flow(flow)
            return facts is not None and test(facts)

        return matches

    return [on_flows(test) for test in http_tests(ff)]
