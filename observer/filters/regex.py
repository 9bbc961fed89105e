"""Regular expressions in FlowFilters (dns_query, http_path, http_url, node_name globs), with RE2's semantics.

Hubble compiles these with Go's regexp, which is RE2: matching takes time linear in the input whatever the
pattern, so no pattern a client sends can make the agent backtrack for ever (`(a+)+$` against a long name), and
what Go refuses (backreferences, lookaround) is refused here too, with RE2's reason. Python's `re` would accept
both and could hang a gRPC worker on one request.
"""

from __future__ import annotations

from typing import Protocol

import re2

from flowscope.observer.filters.base import FilterError

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason goes back to the client; the agent's log is not the place for it


class Regex(Protocol):
    """What filters use of a compiled pattern."""

    def search(self, text: str) -> object | None: ...

    def fullmatch(self, text: str) -> object | None: ...


def shown(value: str, limit: int = 100) -> str:
    """A client's value quoted in an error, cut short: the reason must stay readable whatever was sent."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def compile_regex(pattern: str, what: str) -> Regex:
    """`pattern` compiled as RE2; FilterError naming the filter, the pattern and RE2's reason if it is invalid."""
    try:
        regex: Regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise FilterError(f"invalid {what} filter {shown(pattern)}: {reason}") from None
    return regex
