"""How long the relay waits before trying a node (or the peer service) again, and gRPC's own reconnection
schedule set to the same.

Hubble's relay waits 10 s at first and up to 90 minutes; a lab node restarts in a second or two, and a user
watching a follow stream wants its flows back as soon as it answers. So flowscope starts at a fifth of a
second and doubles up to a few seconds, with jitter so that many streams retrying one node spread out: the
defaults of common/backoff.py's `Backoff`, the one schedule every stage uses.
"""

from __future__ import annotations

from flowscope.common.backoff import Backoff

__all__ = ["Backoff", "channel_options"]


def channel_options(backoff: Backoff) -> list[tuple[str, int]]:
    """gRPC's own reconnection schedule for a channel, set to the same short one."""
    return [
        ("grpc.initial_reconnect_backoff_ms", int(backoff.initial * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(backoff.initial * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(backoff.maximum * 1000)),
    ]
