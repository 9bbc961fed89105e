"""What the L7 pipeline counts, so that an L7 flow that is missing is never silently missing.

The ingest thread (observer/l7/source.py) adds most of these once per batch; the decoder adds `evicted` when a
client is sent an L7 flow whose entry the store has already overwritten. Read by the server for status.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowscope.common.counters import Counters


@dataclass
class L7Counts(Counters):
    messages: int = 0  # L7 messages parsed and stored (one flow each)
    not_l7: int = 0  # records on an L7 port whose payload was not what the port suggests: L3/L4 flows only
    unpaired: int = 0  # responses whose request was never seen (or forgotten): no latency
    dropped: int = 0  # requests forgotten before their response came (too many pending, or too old)
    evicted: int = 0  # L7 flows sent without their L7 fields: the store had overwritten the entry

    def add(self, **counts: int) -> None:
        self._add(**counts)
