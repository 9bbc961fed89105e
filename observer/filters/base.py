"""What every filter module shares: the error, the context filters compile against, the batch they run on.

A filter is compiled once per request (values and patterns checked) into a `Predicate`: a function from a
`Batch` of stored records to a boolean mask over them. Names (pods, labels, identities, interfaces) are resolved
through the registry snapshot, and again whenever the registry replaces it (`FilterContext.following`), so a
follow stream selects endpoints that appear after it started. Columns that several predicates need (which
endpoint owns each address, each record's direction) are computed once per batch and kept on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.parser import EndpointIndex, FlowDecoder, index_of
from flowscope.observer.parser.columns import Side
from flowscope.observer.parser.direction import reply_states, traffic_directions
from flowscope.observer.parser.uuids import FlowIds

if TYPE_CHECKING:
    from flowscope.observer.filters.l7_rows import L7Lookup
    from flowscope.observer.l7.names import NameSets

T = TypeVar("T")


class FilterError(ValueError):
    """A FlowFilter that cannot be applied; the message says what to change (sent as INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class FilterContext:
    """What filters resolve names against: this node, its cluster and the registry snapshot of the moment.

    `instance` is the agent instance the decoder derives flow uuids from (FlowDecoder.instance); uuid filters
    need it to tell this agent's uuids from others'. `snapshots` gives the registry's snapshot of the moment
    (the agent's registry); without it the filters keep `snapshot`, the one they were compiled against.
    `decoder` is the one the flows are sent with: filters that test the decoded flow (CEL) decode with it.
    `l7` is the agent's L7 store: the entries behind its L7 records (type 129, `location` = the entry's
    sequence number), which the L7 filters (http_*, dns_query) read; without it no record matches them.
    `names` holds the name sets behind the records' src_names/dst_names ids (observer/l7/names.py), which
    the FQDN filters read; without it no record has names.
    """

    node_name: str
    snapshot: Snapshot
    cluster_name: str = ""
    instance: bytes | None = None
    snapshots: Callable[[], Snapshot] | None = None
    decoder: FlowDecoder | None = None
    l7: L7Lookup | None = None
    names: NameSets | None = None

    @property
    def cluster(self) -> str:
        return self.cluster_name or self.snapshot.cluster.name

    @property
    def index(self) -> EndpointIndex:
        return index_of(self.snapshot)

    @property
    def flow_ids(self) -> FlowIds | None:
        return None if self.instance is None else FlowIds(self.instance)

    def following(self, resolve: Callable[[Snapshot], T]) -> Callable[[], T]:
        """`resolve` of the registry's current snapshot, computed again only when the registry replaces it.

        Snapshots are immutable and replaced whole, so one identity check per batch tells whether the names a
        predicate resolved (a pod's addresses, an interface's index) still hold; a stream following for hours
        thus sees the pods added since it started, at the cost of one resolution per cluster change.
        """
        latest = (self.snapshot, resolve(self.snapshot))

        def current() -> T:
            nonlocal latest
            snapshot = self.snapshot if self.snapshots is None else self.snapshots()
            if snapshot is not latest[0]:
                latest = (snapshot, resolve(snapshot))
            return latest[1]

        return current


@dataclass(eq=False)
class Batch:
    """Stored records and their sequence numbers, plus columns derived from them on first use."""

    records: np.ndarray
    seqs: np.ndarray
    _derived: dict[object, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    def derived(self, key: object, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A column computed from the records once per batch, however many predicates ask for it."""
        column = self._derived.get(key)
        if column is None:
            column = self._derived[key] = compute()
        return column

    def entries(self, index: EndpointIndex, side: Side) -> np.ndarray:
        """The index entry owning each record's source or destination address."""
        return self.derived((id(index), side), lambda: index.entries_for(self.records, side))

    def directions(self, index: EndpointIndex) -> np.ndarray:
        """flow.TrafficDirection of each record, as the decoder computes it."""

        def compute() -> np.ndarray:
            return traffic_directions(self.records, index.ids[self.entries(index, "src")])

        return self.derived((id(index), "direction"), compute)

    def reply_states(self) -> np.ndarray:
        return self.derived("reply", lambda: reply_states(self.records))


Predicate = Callable[[Batch], np.ndarray]
FlowTest = Callable[[flow_pb2.Flow], bool]  # one decoded flow: for what no record column holds (CEL expressions)


def everything(batch: Batch) -> np.ndarray:
    return np.ones(len(batch), dtype=bool)


def nothing(batch: Batch) -> np.ndarray:
    return np.zeros(len(batch), dtype=bool)
