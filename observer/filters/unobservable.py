"""Fields about data flowscope does not have: DNS names, workloads, L7, tracing, source NAT.

Each is checked the way Hubble checks it (so a malformed value is still an error) and then decided as a Hubble
node without that data would decide it: a flow with no DNS name, workload, L7 record or trace id
matches none of those filters; a flow is never marked encrypted, so `encrypted: false` matches every flow and
`true` none. Regular expressions are checked as RE2 (observer/filters/regex.py), as Hubble's Go regexp checks
them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate, everything, nothing
from flowscope.observer.filters.ip import parse_networks
from flowscope.observer.filters.regex import compile_regex

_FQDN_CHARS = re.compile(r"^[-0-9_a-z.*]+$")
_STATUS_FULL = re.compile(r"^[1-5][0-9]{2}$")
_STATUS_PREFIX = re.compile(r"^[1-5][0-9]?\+$")


def _check_fqdn_patterns(patterns: Iterable[str], what: str) -> None:
    for pattern in patterns:
        canonical = pattern.strip().lower()
        canonical = canonical[:-1] if canonical.endswith(".") else canonical
        if not canonical or canonical.endswith(".") or not _FQDN_CHARS.match(canonical):
            raise FilterError(f"invalid {what} filter {pattern!r}: use letters, digits, '-', '_', '.' and '*'")


def _check_regexes(expressions: Iterable[str], what: str) -> None:
    for expression in expressions:
        compile_regex(expression, what)


def _check_status_codes(codes: Iterable[str]) -> None:
    for code in codes:
        if not (_STATUS_FULL.match(code) or _STATUS_PREFIX.match(code)):
            raise FilterError(f"invalid http status code filter {code!r}: use a code like 404 or a prefix like 5+")


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    _check_fqdn_patterns(ff.source_fqdn, "source FQDN")
    _check_fqdn_patterns(ff.destination_fqdn, "destination FQDN")
    parse_networks(ff.source_ip_xlated, "source IP xlated")
    _check_status_codes(ff.http_status_code)
    _check_regexes(ff.http_path, "http path")
    _check_regexes(ff.http_url, "http url")
    _check_regexes(ff.dns_query, "dns query")

    absent = (
        ff.source_fqdn,
        ff.destination_fqdn,
        ff.source_workload,
        ff.destination_workload,
        ff.source_ip_xlated,
        ff.http_status_code,
        ff.http_method,
        ff.http_path,
        ff.http_url,
        ff.http_header,
        ff.dns_query,
        ff.trace_id,
        ff.ip_trace_id,
    )
    predicates: list[Predicate] = [nothing for values in absent if len(values)]
    if len(ff.encrypted):
        predicates.append(everything if False in ff.encrypted else nothing)
    return predicates
