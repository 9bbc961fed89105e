"""source_fqdn / destination_fqdn (`--from-fqdn`, `--to-fqdn`, `--fqdn`): the names a flow's addresses had.

Patterns read as Hubble reads them: lower-cased, spaces and one trailing dot dropped, only letters, digits,
'-', '_', '.' and '*'; '.' is a literal dot and '*' any run of those characters, dots included, so
"*.svc.lab" matches "web.web.svc.lab". The whole name must match, and a flow matches when any of its names
matches any pattern; a flow without names matches none.

Records hold the names as ids of name sets (observer/l7/names.py), and a batch holds few distinct ids, so the
patterns are tried once per id (remembered: an id always means the same names, or none once evicted) and the
column is then tested with one np.isin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate

_ALLOWED = re.compile(r"[-0-9_a-z.*]+")
_NAME_CHARS = "[-a-zA-Z0-9_.]*"
_REMEMBERED_IDS = 65_536


def compile_fqdn_patterns(patterns: Iterable[str], what: str) -> re.Pattern[str]:
    """One regular expression matching a whole name that any of the patterns matches (Hubble's rules)."""
    alternatives = []
    for pattern in patterns:
        canonical = pattern.lower().strip()
        canonical = canonical[:-1] if canonical.endswith(".") else canonical
        if not _ALLOWED.fullmatch(canonical):
            raise FilterError(f"invalid {what} filter {pattern!r}: use letters, digits, '-', '_', '.' and '*'")
        alternatives.append(canonical.replace(".", "[.]").replace("*", _NAME_CHARS))
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives))


def names_match(regex: re.Pattern[str], names: Sequence[str]) -> bool:
    return any(regex.fullmatch(name) for name in names)


def _names_predicate(ctx: FilterContext, column: str, regex: re.Pattern[str]) -> Predicate:
    sets = ctx.names
    verdicts: dict[int, bool] = {}

    def matches(set_id: int) -> bool:
        verdict = verdicts.get(set_id)
        if verdict is None:
            if len(verdicts) >= _REMEMBERED_IDS:
                verdicts.clear()
            verdict = verdicts[set_id] = sets is not None and names_match(regex, sets.names(set_id))
        return verdict

    def by_names(batch: Batch) -> np.ndarray:
        ids = batch.records[column]
        named = ids != 0
        if sets is None or not named.any():
            return np.zeros(len(batch), dtype=bool)
        wanted = [set_id for set_id in np.unique(ids[named]).tolist() if matches(set_id)]
        return np.isin(ids, np.array(wanted, dtype=ids.dtype))

    return by_names


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_fqdn:
        predicates.append(_names_predicate(ctx, "src_names", compile_fqdn_patterns(ff.source_fqdn, "source FQDN")))
    if ff.destination_fqdn:
        regex = compile_fqdn_patterns(ff.destination_fqdn, "destination FQDN")
        predicates.append(_names_predicate(ctx, "dst_names", regex))
    return predicates
