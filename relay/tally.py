"""What the relay's GetFlows streams did, summed over every stream, open or ended: the figures its metrics show.

Each stream keeps its own counts where they are made (a Fanout counts the responses it hands over a batch at a
time and the node status events it sends; its Merger the responses it merged, the late and the dropped, and the
LostEvents it made for the dropped), so nothing is counted per flow and no lock is shared between streams. The
tally holds the open streams and adds the ended ones' counts to its totals as they end, both under one lock, so
a reading never counts a stream twice or not at all.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from flowscope.relay.fanout import Fanout

FIGURES = ("delivered", "merged", "late", "dropped", "lost_events")


@dataclass
class Totals:
    delivered: int = 0  # responses handed to clients (flows, node status events, LostEvents)
    merged: int = 0  # responses the mergers released in time order
    late: int = 0  # of them, released after later ones (a node catching up)
    dropped: int = 0  # responses dropped because their client did not keep up
    lost_events: int = 0  # LostEvents the relay made in their place
    node_events: Counter[str] = field(default_factory=Counter)  # node status events sent, by state

    def add(self, fanout: Fanout) -> None:
        stats = fanout.merger.stats
        self.delivered += fanout.delivered
        self.merged += stats.merged
        self.late += stats.late
        self.dropped += stats.dropped
        self.lost_events += stats.lost_events
        self.node_events.update(dict(fanout.node_events))  # a copy: node threads may add a state meanwhile


@dataclass(frozen=True)
class Reading:
    totals: Totals
    streams: int  # GetFlows streams open now
    reading: Counter[str]  # per node, how many of them have its stream open now


class FlowsTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Fanout] = set()
        self._ended = Totals()

    def opened(self, fanout: Fanout) -> None:
        with self._lock:
            self._open.add(fanout)

    def ended(self, fanout: Fanout) -> None:
        with self._lock:
            if fanout in self._open:
                self._open.remove(fanout)
                self._ended.add(fanout)

    def read(self) -> Reading:
        with self._lock:
            totals = Totals(**{name: getattr(self._ended, name) for name in FIGURES})
            totals.node_events.update(self._ended.node_events)
            reading: Counter[str] = Counter()
            for fanout in self._open:
                totals.add(fanout)
                reading.update(fanout.reading())
            return Reading(totals, len(self._open), reading)
