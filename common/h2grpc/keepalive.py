"""The two clocks of a client stream: the call's deadline, and keepalive pings on a quiet connection.

A server that froze, or whose network went away, never resets anything: only a ping it does not answer tells.
With `keepalive_s`, a stream that heard nothing for that long sends a PING, and one unanswered for twice that
is declared gone. The stream's read blocks no longer than `wait_s()` allows, then asks `due()` what to do.
"""

from __future__ import annotations

import enum
import time


class Due(enum.Enum):
    NOTHING = "nothing"
    DEADLINE = "deadline"  # the call's time is up: DEADLINE_EXCEEDED
    PING = "ping"  # quiet for keepalive_s: send a PING
    GONE = "gone"  # a PING unanswered for twice keepalive_s: UNAVAILABLE


class Timers:
    """The deadline (monotonic, or None) and keepalive state of one stream."""

    def __init__(self, timeout: float | None, keepalive_s: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.keepalive_s = keepalive_s if keepalive_s and keepalive_s > 0 else None
        self._last_heard = 0.0
        self._ping_sent_at: float | None = None

    def heard(self) -> None:
        """The server sent something: whatever it was, it is alive."""
        self._last_heard = time.monotonic()
        self._ping_sent_at = None

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait_s(self) -> float | None:
        """How long the next read may block before the deadline or keepalive needs a look (None: forever)."""
        now = time.monotonic()
        waits = []
        if self.deadline is not None:
            waits.append(self.deadline - now)
        if self.keepalive_s is not None:
            if self._ping_sent_at is None:
                waits.append(self._last_heard + self.keepalive_s - now)
            else:
                waits.append(self._ping_sent_at + 2 * self.keepalive_s - now)
        return max(0.0, min(waits)) if waits else None

    def due(self) -> Due:
        """What a read that timed out must do now; a PING asked for counts as sent."""
        if self.past_deadline():
            return Due.DEADLINE
        if self.keepalive_s is None:
            return Due.NOTHING
        now = time.monotonic()
        if self._ping_sent_at is None:
            if now - self._last_heard >= self.keepalive_s:
                self._ping_sent_at = now
                return Due.PING
        elif now - self._ping_sent_at >= 2 * self.keepalive_s:
            return Due.GONE
        return Due.NOTHING
