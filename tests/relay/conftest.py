"""Fixtures for relay tests: short socket paths, relays in this process, and clients that read in the
background so a test can wait for what it expects with a deadline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from relay_client import Follower

from flowscope.api.observer import observer_pb2
from flowscope.relay.server import RelayConfig, RelayServer


@pytest.fixture
def start_relay() -> Iterator[Callable[..., RelayServer]]:
    """Start relays on a free localhost port (RelayConfig fields as keywords); all stopped afterwards."""
    relays: list[RelayServer] = []

    def start(**fields: Any) -> RelayServer:
        relay = RelayServer(RelayConfig(listen_address="localhost:0", name="relay", **fields)).start()
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.stop(grace=0.1)


@pytest.fixture
def follow() -> Iterator[Callable[..., Follower]]:
    followers: list[Follower] = []

    def start(channel: grpc.Channel, **request: Any) -> Follower:
        follower = Follower(channel, observer_pb2.GetFlowsRequest(**request))
        followers.append(follower)
        return follower

    yield start
    for follower in followers:
        follower.cancel()


@pytest.fixture
def needs_root() -> None:
    """Labs need root: skipped without it, except under CI=true, where that is a failure."""
    import os

    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("relay lab tests must run under CI, but they need root")
        pytest.skip("relay lab tests need root")
