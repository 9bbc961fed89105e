"""What the L7 filters read: the store entry behind each L7 record of a batch.

An L7 record in the flow ring (type 129, Cilium's MessageTypeAccessLog) is a reference: its `location` column
holds the sequence number of an entry in the agent's L7 store (observer/l7/store.py), where the message's fields
live. L7 records are few among the flows, so the filters pick them out with one vectorised test of `type`, look
each one's entry up once per batch (however many L7 filters ask), and test the entry in Python. A record of
another type, or one whose entry the store has already evicted, has no L7 fields and matches no L7 filter, as
a Hubble flow without `l7` matches none.

The two protocols say what the filters need of the store and its entries, so they depend on that interface
only, not on how the store keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from flowscope.common import names
from flowscope.observer.filters.base import Batch

EVENT_L7 = names.EVENT_TYPES["l7"]
T = TypeVar("T")


class L7Record(Protocol):
    """The columns of an L7 store entry that filters read (observer/l7/store.py, L7Entry)."""

    @property
    def kind(self) -> str: ...  # "dns" | "http"

    @property
    def l7_type(self) -> int: ...  # flow.L7FlowType

    @property
    def dns_query(self) -> str: ...

    @property
    def dns_rcode(self) -> int: ...

    @property
    def http_code(self) -> int: ...

    @property
    def http_method(self) -> str: ...

    @property
    def http_url(self) -> str: ...

    @property
    def http_path(self) -> str: ...

    @property
    def http_headers(self) -> tuple[tuple[str, str], ...]: ...


class L7Lookup(Protocol):
    """The agent's L7 store as filters use it: an entry by sequence number, None once evicted."""

    def get(self, seq: int) -> L7Record | None: ...


def l7_entries(batch: Batch, store: L7Lookup) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the batch's L7 records and their entries (None where evicted), looked up once per batch."""
    rows = batch.derived("l7-rows", lambda: np.flatnonzero(batch.records["type"] == EVENT_L7))

    def look_up() -> np.ndarray:
        entries = np.empty(len(rows), dtype=object)
        entries[:] = [store.get(int(seq)) for seq in batch.records["location"][rows]]
        return entries

    return rows, batch.derived(("l7-entries", id(store)), look_up)


def matching(
    store: L7Lookup | None, view: Callable[[L7Record], T | None], test: Callable[[T], bool]
) -> Callable[[Batch], np.ndarray]:
    """A predicate: the L7 records whose entry has a `view` (what one kind of filter reads of it: an HTTP
    message's facts, a DNS query name) that passes `test`; nothing at all without a store. Each view is made
    once per batch, however many filters of that kind read it, so `view` must be one function, not a new one
    per filter."""

    def predicate(batch: Batch) -> np.ndarray:
        mask = np.zeros(len(batch), dtype=bool)
        if store is None:
            return mask
        rows, entries = l7_entries(batch, store)
        if len(rows):

            def viewed() -> np.ndarray:
                views = np.empty(len(entries), dtype=object)
                views[:] = [None if entry is None else view(entry) for entry in entries]
                return views

            views = batch.derived(("l7-view", id(store), view), viewed)
            mask[rows] = [value is not None and test(value) for value in views]
        return mask

    return predicate
