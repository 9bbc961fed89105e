"""The live screen of `top` and `map`: keys in, frames out, streams started and replaced.

Both views are the same loop over different tables and frames, so the loop is written once here and a view
says only what differs: the table a new filter's stream counts into (`new_table`), what a key does (`handle`)
and the frame drawn from the table (`build`). The main thread waits for keys until the next frame is due,
redraws at most 10 times a second while keys are pressed, and otherwise every `interval` seconds. A broken
stream is resumed on the same table after observe -f's backoff (cli/observe/follow.py: 1, 2, 4, 8, then every
10 s, from the first response again), the table's footer naming the wait; a filter the server refuses
(INVALID_ARGUMENT) is never retried: the filter line shows the reason and goes back to the filter before.

A packet-path session (Action.TRACE, key `s` in top) is run between two stretches of the screen: the live screen
and the keys' cbreak mode are left, the session runs on the ordinary screen (cli/top/session.py), and the screen
comes back over the same stream, which went on counting.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod

from rich.console import Console, RenderableType
from rich.live import Live

from flowscope.api.observer import observer_pb2
from flowscope.cli.connection import Connection
from flowscope.cli.interrupts import EXIT_CODE, Interrupts
from flowscope.cli.observe.follow import backoff
from flowscope.cli.top import session
from flowscope.cli.top.controls import Action, Controls
from flowscope.cli.top.keys import RawTerminal, read_keys
from flowscope.cli.top.livefilter import LiveFilter
from flowscope.cli.top.state import FlowTable
from flowscope.cli.top.stream import Stream

FASTEST = 0.1  # seconds between frames when keys ask for more (10 Hz)


class Screen(ABC):
    """The screen loop of one view; `line` is the view's filter line (its text is the stream's filter)."""

    def __init__(self, connection: Connection, live_filter: LiveFilter, line: Controls, interval: float) -> None:
        self.connection = connection
        self.filter = live_filter
        self.line = line
        self.interval = interval
        self.stream: Stream | None = None
        self.backoff = backoff()
        self.retry_at: float | None = None  # when the ended stream is asked for again

    @abstractmethod
    def new_table(self) -> FlowTable:
        """An empty table for a new filter's stream."""

    @abstractmethod
    def handle(self, key: str) -> Action | None:
        """Apply one key (a character or a name from cli/top/keys.decode)."""

    @abstractmethod
    def build(self, width: int, height: int) -> RenderableType:
        """One frame from the current stream's table."""

    def trace_arguments(self) -> list[str] | None:
        """`flowscope trace` filter flags for what the keys chose, when a key asked for a session (Action.TRACE);
        a view with nothing to trace never asks."""
        return None

    def run(self, request: observer_pb2.GetFlowsRequest) -> int:
        console = Console(highlight=False, markup=False, emoji=False)
        self.stream = Stream(self.connection, request, self.new_table())
        fd = sys.stdin.fileno()
        try:  # Ctrl-C and SIGTERM end the loop below, which unwinds and gives the terminal back (cli/interrupts.py)
            with Interrupts() as interrupts:
                while True:
                    with (
                        RawTerminal(fd),
                        Live(
                            console=console,
                            screen=True,
                            auto_refresh=False,
                            redirect_stdout=False,
                            redirect_stderr=False,
                        ) as live,
                    ):
                        outcome = self._loop(fd, console, live, interrupts)
                    arguments = self.trace_arguments() if outcome is Action.TRACE else None
                    if arguments is None:
                        return int(outcome) if isinstance(outcome, int) else 0
                    code = session.run(arguments, self.connection.options, console, fd, interrupts)
                    if code is not None:
                        return code
        finally:
            self.stream.stop()

    def _loop(self, fd: int, console: Console, live: Live, interrupts: Interrupts) -> int | Action:
        """Frames and keys until a key or a signal ends the screen: an exit code, or Action.TRACE to step aside."""
        due = 0.0
        while True:
            keys = read_keys(fd, due - time.monotonic())
            if interrupts.stopped:
                return EXIT_CODE
            for key in keys:
                if key == "eof":  # nobody left to see the screen
                    return 0
                action = self.handle(key)
                if action is Action.QUIT:
                    return 0
                if action is Action.TRACE:
                    return action
                if action is Action.FILTER:
                    self._restart(self.filter.request(self.line.filter_text), self.new_table())
                due = min(due, time.monotonic() + FASTEST)
            now = time.monotonic()
            if now >= due:
                self._retry(now)
                live.update(self.build(console.size.width, console.size.height), refresh=True)
                due = now + self.interval

    def _restart(self, request: observer_pb2.GetFlowsRequest, table: FlowTable) -> None:
        if self.stream is not None:
            self.stream.stop()
        self.stream = Stream(self.connection, request, table)
        self.retry_at = None

    def _retry(self, now: float) -> None:
        """A stream that broke is resumed on the same table after the backoff's wait, named in the footer, with
        new flows only (none counted twice); a refused one is replaced by the filter before it, or left ended
        when there is none."""
        stream = self.stream
        assert stream is not None
        if stream.received and self.backoff.attempts:
            self.backoff.reset()
        ended, refused = stream.ended_at, stream.refused
        if ended is None:
            return
        if refused is not None:
            stream.refused = None  # read once: the stream stays ended, never retried
            if self.line.refuse(refused):
                self._restart(self.filter.request(self.line.filter_text), self.new_table())
        elif stream.final:
            return
        elif self.retry_at is None:
            delay = self.backoff.next()
            self.retry_at = ended + delay
            # "retrying" first: gRPC's reasons can be long, and a narrow footer cuts the end.
            stream.table.set_error(f"retrying in {delay:g}s: {stream.lost or 'the stream ended'}")
        elif now >= self.retry_at:
            self._restart(self.filter.request(self.line.filter_text, backfill=None), stream.table)
