"""Counters that several threads add to: the agent's lost-event counts and the relay's client stats.

Both are a few int fields that change at most once per batch, read without the lock (an int read is atomic) and
written under it, so two adds from different threads never lose one. One base keeps that rule in one place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Counters:
    """A dataclass of int fields; subclasses add their fields and a typed `add` that calls `_add`."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, kw_only=True)

    def _add(self, **counts: int) -> None:
        """Add each count to the field of its name, under the lock so concurrent adds are never lost."""
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)
