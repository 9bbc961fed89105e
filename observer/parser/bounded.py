"""The decoder's caches (per snapshot, per shape, per field mask) are bounded one way: emptied when full."""

from __future__ import annotations

from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


def bounded(cache: dict[_K, _V], limit: int = 4096) -> dict[_K, _V]:
    """`cache`, emptied first when it holds `limit` entries: a bound on memory that costs nothing per hit."""
    if len(cache) >= limit:
        cache.clear()
    return cache
