"""node_name: glob patterns over "cluster/node", as Hubble matches them.

A pattern is `node` (any cluster) or `cluster/node`; each part is an FQDN-style glob where `*` matches any run
of letters, digits, '-' and '.', and an empty part matches anything. Patterns are lower-cased; other
characters are rejected. A node name without a cluster is taken to be in this node's cluster.

Every flow a node stores carries that node's name, so the filter is decided once, at compile time, by RE2
(observer/filters/regex.py) like every pattern a client sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate, everything, nothing
from flowscope.observer.filters.regex import Regex, compile_regex

_ANY_NAME = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)"
_GLOB_CHARS = re.compile(r"^[-0-9_a-z.*]*$")


def _glob(part: str, pattern: str) -> str:
    """The regular expression of one part (cluster or node) of a pattern."""
    if not part:
        return _ANY_NAME
    canonical = part.strip().lower()
    canonical = canonical[:-1] if canonical.endswith(".") else canonical
    if not canonical or canonical.endswith(".") or not _GLOB_CHARS.match(canonical):
        raise FilterError(
            f"invalid node name filter {pattern!r}: each of `node` or `cluster/node` takes letters, digits, "
            "'-', '_', '.' and '*'"
        )
    return "".join(r"[-.0-9a-z]*" if c == "*" else re.escape(c) for c in canonical)


def compile_node_patterns(patterns: Iterable[str]) -> Regex:
    alternatives = []
    for pattern in patterns:
        if not pattern:
            raise FilterError("invalid node name filter: empty pattern")
        parts = pattern.split("/")
        if len(parts) > 2:
            raise FilterError(f"invalid node name filter {pattern!r}: too many slashes (use cluster/node)")
        cluster, node = parts if len(parts) == 2 else ("", parts[0])
        alternatives.append(f"{_glob(cluster, pattern)}/{_glob(node, pattern)}")
    return compile_regex("(?:" + "|".join(alternatives) + ")", "node name")


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.node_name:
        return []
    regex = compile_node_patterns(ff.node_name)
    name = ctx.node_name if "/" in ctx.node_name else f"{ctx.cluster}/{ctx.node_name}"
    return [everything if ctx.node_name and regex.fullmatch(name) else nothing]
