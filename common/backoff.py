"""How long to wait before asking a server that went away again: one schedule, doubling up to a cap.

Written once for every stage that reconnects: the relay to its nodes (short waits, with jitter so that many
streams retrying one node spread out: relay/backoff.py) and the CLI's long-lived views, `observe -f` and `top`
(a person watching: 1, 2, 4, 8, then every 10 s: cli/observe/follow.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

INITIAL_S = 0.2
MAX_S = 2.0
FACTOR = 2.0
JITTER = 0.2


@dataclass
class Backoff:
    initial: float = INITIAL_S
    maximum: float = MAX_S
    factor: float = FACTOR
    jitter: float = JITTER  # each wait is the nominal one times 1 ± jitter
    attempts: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next(self) -> float:
        """The wait before the next attempt; each failure makes the following one longer."""
        nominal = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        spread = nominal * self.jitter
        return max(0.0, nominal + self._random.uniform(-spread, spread))

    def reset(self) -> None:
        """After a success: the next failure starts from the initial wait again."""
        self.attempts = 0
