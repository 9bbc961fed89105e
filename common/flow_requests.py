"""What every server of GetFlows checks first, the agent and the relay alike, so both refuse the same requests
in the same words: `first` with `follow`, and a `since`/`until` that is no valid Timestamp or out of order."""

from __future__ import annotations

from flowscope.api.observer import observer_pb2


def time_window(request: observer_pb2.GetFlowsRequest) -> tuple[int | None, int | None]:
    """The request's (since, until) in nanoseconds, None where unset; ValueError with the reason for a request
    no server should serve."""
    if request.first and request.follow:
        raise ValueError("first cannot be combined with follow")
    since, until = _ns(request, "since"), _ns(request, "until")
    if since is not None and until is not None and since > until:
        raise ValueError("since is after until")
    return since, until


def _ns(request: observer_pb2.GetFlowsRequest, name: str) -> int | None:
    """A Timestamp in nanoseconds; a valid one has nanos in 0..999,999,999 and seconds up to the year 9999."""
    if not request.HasField(name):
        return None
    try:
        return int(getattr(request, name).ToNanoseconds())
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
