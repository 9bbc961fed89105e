"""How long to wait before trying a node (or the peer service) again.

Hubble's relay waits 10 s at first and up to 90 minutes; a lab node restarts in a second or two, and a user
watching a follow stream wants its flows back as soon as it answers. So flowscope starts at a fifth of a
second and doubles up to a few seconds, with jitter so that many streams retrying one node spread out.
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


def channel_options(backoff: Backoff) -> list[tuple[str, int]]:
    """gRPC's own reconnection schedule for a channel, set to the same short one."""
    return [
        ("grpc.initial_reconnect_backoff_ms", int(backoff.initial * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(backoff.initial * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(backoff.maximum * 1000)),
    ]
