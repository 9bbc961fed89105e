"""Opening a channel to an agent: where to dial a peer, and with what credentials and options.

A peer is dialed at its address (`10.77.0.1:4244`, `[fd77::1]:4244`, `unix:///path`), or, with a socket
template, at a unix socket named after it: the relay then reaches agents on the same machine through the
file system, as the lab's relay does (lab/relay.py says why). Unix sockets are always plaintext, as the
agent serves them; TCP uses TLS when the relay was given client TLS.

Flows are read on a connection of each GetFlows stream's own (common/h2grpc/client.py: grpcio's ~40 µs of
CPU per message was most of the relay's cost); the peer's gRPC channel stays for whether it is there and for
its other calls. A node that dies is noticed when its connection is reset (a killed agent, a stopped
namespace). One that stops answering without a reset (a frozen process, a cut-off network) is noticed by
keepalive pings: on the channel, one a second, a ping unanswered for a second closing it; on a follow stream,
one after each second without a byte from the node, and one unanswered for two seconds ends the stream as
UNAVAILABLE. Our agents' servers accept pings that often (observer/server/serve.py); a gRPC server's
default policy, Hubble's agents' included, answers more than one every five minutes on an idle stream with
GOAWAY (gRPC then pings less often by itself): `flowscope relay --peer-keepalive 0` turns them off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from flowscope.common.addresses import dial_target
from flowscope.common.h2grpc.client import Stream, open_stream
from flowscope.common.tls import ClientTLS
from flowscope.relay.backoff import Backoff, channel_options

MAX_MESSAGE = 16 * 1024 * 1024
GET_FLOWS = "/observer.Observer/GetFlows"
# A node stream's read buffer: one per node per client request, touched whole (50 nodes: 3 MiB a client, not
# 12.5 at the reader's default); a read of it is still ~150 flows, pushed into the merge together.
NODE_READ_SIZE = 64 * 1024
KEEPALIVE_S = 1.0  # a ping after this long without one, and this long for its answer


def keepalive_options(seconds: float) -> list[tuple[str, int]]:
    """Keepalive pings every `seconds`, also on an idle stream; none when 0."""
    if seconds <= 0:
        return []
    ms = max(1, int(seconds * 1000))
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        ("grpc.http2.ping_timeout_ms", ms),  # otherwise an unanswered ping is given a minute
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # an idle follow stream sends no data for as long as it is idle
    ]


def is_unix(target: str) -> bool:
    return target.startswith("unix:")


@dataclass(frozen=True)
class Dialer:
    """Makes the channels of one relay: same TLS, same reconnection schedule, same socket template."""

    tls: ClientTLS | None = None
    socket_template: str | None = None  # e.g. /run/flowscope/labs/lab/{name}/hubble.sock
    backoff: Backoff | None = None
    keepalive_s: float = KEEPALIVE_S  # 0: no pings

    def target(self, name: str, address: str) -> str:
        if self.socket_template:
            return dial_target(self.socket_template.format(name=name))
        return dial_target(address)

    def secure(self, target: str) -> bool:
        return self.tls is not None and not is_unix(target)

    def open_flows(
        self, target: str, request: bytes, server_name: str = "", keepalive_s: float | None = None
    ) -> Stream:
        """A GetFlows stream to `target` on a connection of its own, with this relay's TLS and keepalive (or
        `keepalive_s`, for a peer that asked for fewer pings)."""
        return open_stream(
            target,
            GET_FLOWS,
            request,
            tls=self.tls if self.secure(target) else None,
            server_name=server_name,
            keepalive_s=self.keepalive_s if keepalive_s is None else keepalive_s,
            max_message=MAX_MESSAGE,
            read_size=NODE_READ_SIZE,
        )

    def channel(self, target: str, server_name: str = "") -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            *channel_options(self.backoff or Backoff()),
            *keepalive_options(self.keepalive_s),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            # One connection per agent per relay, not shared with other channels of this process, so closing
            # a peer's channel really closes its connection.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if not self.secure(target):
            return grpc.insecure_channel(target, options=options)
        assert self.tls is not None
        return self.tls.channel(target, server_name, options)
