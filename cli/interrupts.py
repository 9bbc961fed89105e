"""Ctrl-C (SIGINT) and SIGTERM as a request to stop that the command's own loop reads, never an exception raised
wherever the main thread happens to be.

Python raises KeyboardInterrupt between any two bytecodes of the main thread. Inside a library that is a race:
landing in a Python-level `__enter__` just after a lock was taken (gRPC's call state is guarded by a
`threading.Condition`, whose `__enter__` is Python code), it leaves that lock held with no `with` block to give it
back, and the thread that delivers the call's events, and with it closing the channel, waits for it forever: the
command hangs after the Ctrl-C that should have ended it. So while a command follows a stream, the handler only
notes the signal and wakes the main thread's wait; gRPC's work happens on other threads, and the main thread
leaves its loop, cancels and closes in order. Outside that window (connecting, closing) the usual
KeyboardInterrupt stands, so a Ctrl-C there still ends the command at once.
"""

from __future__ import annotations

import queue
import signal
import time
from types import FrameType, TracebackType
from typing import Any, Self

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # what a shell reports for a command Ctrl-C ended, as `main` returns for KeyboardInterrupt
POLL_S = 0.2  # longest a wait lasts without looking: a signal another thread received is seen by then


class Stop:
    """Put in the queue by the handler: the signal that asked to stop."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


class Interrupts:
    """While open, SIGINT and SIGTERM set `signum` and put a `Stop` in `inbox` (SimpleQueue.put is reentrant, so a
    handler may call it even while the main thread is inside `get`); closing restores the handlers before."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def get(self, timeout: float | None = None) -> Any:
        """The next item put in the inbox (a `Stop` once a signal came), or None when `timeout` passed first.

        Waits in slices of POLL_S: the kernel may hand the signal to one of gRPC's threads, which does not wake
        this one; its handler then runs at the end of the slice."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return self.inbox.get(timeout=wait)
            except queue.Empty:
                continue

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.inbox.put(Stop(signum))

    def __enter__(self) -> Self:
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
