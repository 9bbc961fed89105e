"""GetAgentEvents and GetDebugEvents: which events of their ring a request selects.

Both requests carry GetFlows' selectors without filters, and Hubble reads them the same way (docs/reference/
hubble-behaviour.md, the `--first/--last/--follow` selectors): `first` reads forward from the oldest event,
`follow` with no number starts at the newest, a `number` otherwise is the newest that many (within `since` and
`until`), sent oldest first, and no number at all means everything stored. Like observer/server/getflows.py this
knows nothing of gRPC: it yields (time, message) pairs and raises InvalidRequest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from flowscope.observer.event_ring import EventRing, Stamped
from flowscope.observer.server.getflows import FOLLOW_POLL_S, InvalidRequest

M = TypeVar("M", bound=Message)


class EventsRequest(Protocol):
    """What GetAgentEventsRequest and GetDebugEventsRequest share."""

    number: int
    first: bool
    follow: bool
    since: timestamp_pb2.Timestamp
    until: timestamp_pb2.Timestamp

    def HasField(self, field_name: str) -> bool: ...


@dataclass(frozen=True)
class EventSelection:
    number: int
    first: bool
    follow: bool
    since_ns: int | None
    until_ns: int | None

    @classmethod
    def of(cls, request: EventsRequest) -> EventSelection:
        """The request's selectors, checked as GetFlows checks them; InvalidRequest with the reason."""
        if request.first and request.follow:
            raise InvalidRequest("first cannot be combined with follow")
        since = request.since.ToNanoseconds() if request.HasField("since") else None
        until = request.until.ToNanoseconds() if request.HasField("until") else None
        if since is not None and until is not None and since > until:
            raise InvalidRequest("since is after until")
        return cls(request.number, request.first, request.follow, since, until)

    def within(self, event: Stamped[M]) -> bool:
        return (self.since_ns is None or event.time_ns >= self.since_ns) and (
            self.until_ns is None or event.time_ns <= self.until_ns
        )

    def past_until(self, event: Stamped[M]) -> bool:
        return self.until_ns is not None and event.time_ns > self.until_ns


def select_events(ring: EventRing[M], selection: EventSelection, active: Callable[[], bool]) -> Iterator[Stamped[M]]:
    """The events the selection asks for, oldest first; following, until `active` says stop."""
    stored = ring.since(0)
    wanted = [event for event in stored if selection.within(event)]
    if selection.first:
        yield from wanted[: selection.number or None]
        return
    if not (selection.follow and selection.number == 0 and selection.since_ns is None):
        yield from wanted[-selection.number :] if selection.number else wanted
    if not selection.follow:
        return
    position = stored[-1].seq + 1 if stored else 0  # a ring that stored nothing has written nothing
    while active():
        if not ring.wait(position, FOLLOW_POLL_S):
            if selection.until_ns is not None and time.time_ns() > selection.until_ns:
                return
            continue
        for event in ring.since(position):
            if selection.past_until(event):
                return
            if selection.within(event):
                yield event
            position = event.seq + 1
