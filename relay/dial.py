"""Opening a channel to an agent: where to dial a peer, and with what credentials and options.

A peer is dialed at its address (`10.77.0.1:4244`, `[fd77::1]:4244`, `unix:///path`), or, with a socket
template, at a unix socket named after it: the relay then reaches agents on the same machine through the
file system, as the lab's relay does (lab/relay.py says why). Unix sockets are always plaintext, as the
agent serves them; TCP uses TLS when the relay was given client TLS.

No keepalive pings: an agent's gRPC server (by default) answers a client that pings an idle stream more than
once every five minutes with GOAWAY, which would break idle follow streams. A node that dies is noticed when its
connection is reset (a killed agent, a stopped namespace); a node cut off without a reset is noticed by TCP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import grpc.experimental

from relay.backoff import Backoff, channel_options
from relay.tls import ClientTLS

MAX_MESSAGE = 16 * 1024 * 1024


def target_of(address: str) -> str:
    """The gRPC target for an address as written in flags and peer notifications."""
    if address.startswith("/"):
        return f"unix://{address}"
    return address


def is_unix(target: str) -> bool:
    return target.startswith("unix:")


@dataclass(frozen=True)
class Dialer:
    """Makes the channels of one relay: same TLS, same reconnection schedule, same socket template."""

    tls: ClientTLS | None = None
    socket_template: str | None = None  # e.g. /run/flowscope/labs/lab/{name}/hubble.sock
    backoff: Backoff | None = None

    def target(self, name: str, address: str) -> str:
        if self.socket_template:
            return target_of(self.socket_template.format(name=name))
        return target_of(address)

    def secure(self, target: str) -> bool:
        return self.tls is not None and not is_unix(target)

    def channel(self, target: str, server_name: str = "") -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            *channel_options(self.backoff or Backoff()),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            # One connection per agent per relay, not shared with other channels of this process, so closing
            # a peer's channel really closes its connection.
            ("grpc.use_local_subchannel_pool", 1),
            # Read each stream on the thread that iterates it, not through a thread of gRPC's: a hand-off
            # between threads per flow was most of the relay's cost (it more than doubles its throughput).
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ]
        if not self.secure(target):
            return grpc.insecure_channel(target, options=options)
        assert self.tls is not None
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        return grpc.secure_channel(target, self.tls.credentials(), options=options)
