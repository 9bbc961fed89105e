"""A small ring of timestamped protobuf messages: the agent's own events and the datapath's debug events.

Flows live in a ring of raw records (observer/flow_ring.py) because there are many of them; these events are
few, already decoded and made by the agent's own threads, so a bounded deque of messages is all they need. The
ring keeps the newest `capacity` events; each event gets the next sequence number, which lets a follower ask
for everything after the last one it saw and wait for it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

CAPACITY = 4095  # Cilium's agent event ring holds this many as well

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Stamped(Generic[M]):
    seq: int
    time_ns: int  # wall clock, when the event happened
    message: M


class EventRing(Generic[M]):
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._events: deque[Stamped[M]] = deque(maxlen=capacity)
        self._written = 0
        self._changed = threading.Condition()

    @property
    def written(self) -> int:
        """The sequence number the next event will get."""
        return self._written

    def __len__(self) -> int:
        return len(self._events)

    def add(self, message: M, time_ns: int | None = None) -> None:
        with self._changed:
            self._events.append(Stamped(self._written, time.time_ns() if time_ns is None else time_ns, message))
            self._written += 1
            self._changed.notify_all()

    def since(self, seq: int) -> list[Stamped[M]]:
        """The stored events numbered `seq` and later, oldest first (those overwritten are gone)."""
        with self._changed:
            oldest = self._written - len(self._events)
            return list(itertools.islice(self._events, max(0, seq - oldest), None))

    def wait(self, seq: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for event `seq` to be written; whether it was."""
        with self._changed:
            return self._changed.wait_for(lambda: self._written > seq, timeout)
