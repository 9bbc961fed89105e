"""The checks the agent and the relay both make before serving GetFlows."""

from __future__ import annotations

import pytest

from flowscope.api.observer import observer_pb2
from flowscope.common.flow_requests import time_window


def test_a_window_in_nanoseconds() -> None:
    request = observer_pb2.GetFlowsRequest()
    request.since.FromNanoseconds(5)
    assert time_window(request) == (5, None)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (observer_pb2.GetFlowsRequest(first=True, follow=True), "first cannot be combined with follow"),
        (observer_pb2.GetFlowsRequest(since={"seconds": 2}, until={"seconds": 1}), "since is after until"),
        (observer_pb2.GetFlowsRequest(since={"nanos": -1}), "since: "),
        (observer_pb2.GetFlowsRequest(until={"seconds": 10**12}), "until: "),
    ],
)
def test_requests_no_server_serves(request_: observer_pb2.GetFlowsRequest, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        time_window(request_)
