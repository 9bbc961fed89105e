"""policy: `hubble_policy_verdicts_total{direction, match, action}`, policy verdict events (and L7 flows).

As Hubble's handler: a policy verdict event counts by the direction the policy was evaluated in ("ingress",
"egress"), how it matched (Cilium's words: "L3-Only", "L3-L4", "all", "none"...) and its verdict in lower case
("forwarded", "dropped"); an L7 flow counts with match "l7/dns" or "l7/http". flowscope's L7 flows are observed,
not proxied, so theirs is always "forwarded".
"""

from __future__ import annotations

import numpy as np

from flowscope.common.names import EVENT_POLICY_VERDICT, POLICY_MATCH_TYPES
from flowscope.observer.metrics.batch import PROTOCOLS, MetricsBatch
from flowscope.observer.metrics.context import DIRECTIONS
from flowscope.observer.metrics.handler import VERDICTS, Handler
from flowscope.observer.metrics.labels import Column

_MATCHES = tuple(POLICY_MATCH_TYPES.get(n, "unknown") for n in range(8))
_ACTIONS = tuple(verdict.lower() for verdict in VERDICTS)
_L7_MATCHES = tuple(f"l7/{name.lower()}" for name in PROTOCOLS)


class PolicyHandler(Handler):
    name = "policy"

    def setup(self) -> None:
        self.verdicts = self.counter(
            "policy_verdicts_total", "Number of policy verdicts", ["direction", "match", "action"]
        )

    def count(self, batch: MetricsBatch) -> None:
        rows = np.flatnonzero(batch.records["type"] == EVENT_POLICY_VERDICT)
        if len(rows):
            matches = (batch.records["policy_flags"][rows] >> 3) & 0x7
            self.add(self.verdicts, batch, rows, self._labels(batch, rows, Column.table(matches, _MATCHES)))
        l7 = batch.l7_rows[batch.l7_kinds[batch.l7_rows] != 0]
        if len(l7):
            self.add(self.verdicts, batch, l7, self._labels(batch, l7, Column.table(batch.l7_kinds[l7], _L7_MATCHES)))

    @staticmethod
    def _labels(batch: MetricsBatch, rows: np.ndarray, matches: Column) -> list[Column]:
        return [
            Column.table(batch.directions[rows], DIRECTIONS),
            matches,
            Column.table(batch.verdicts[rows], _ACTIONS),
        ]
