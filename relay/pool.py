"""The relay's peers: which agents exist, a channel to each, and whether it is connected right now.

Peers come from the peer service (relay/peers.py) or a static list; each gets one gRPC channel, shared by all
the relay's requests, that keeps itself connected: gRPC retries a lost connection on the relay's short
schedule (relay/backoff.py), and the pool watches the channels' states so requests know which nodes are
connected and wake up as soon as a node comes back.

One thread watches every channel, reading each one's state every WATCH_S. grpcio's own way, `subscribe`, runs a
thread per channel that waits for a change in 0.2 s slices on the C core's timers: ~0.5 ms of CPU a second per
channel, as much as 50 idle nodes' flows at 200 a second cost the relay in all (bench/relay_bench.py --nodes).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.common.h2grpc.client import Stream
from flowscope.relay.dial import Dialer

log = logging.getLogger(__name__)

WATCH_S = 0.2  # how often the pool reads its channels' states: a node that comes or goes is seen this soon


@dataclass(frozen=True)
class Peer:
    name: str
    address: str
    server_name: str = ""  # the name in its TLS certificate, when it serves TLS


class Link(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    FAILED = "failed"


_LINKS = {
    grpc.ChannelConnectivity.READY: Link.READY,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE: Link.FAILED,
    grpc.ChannelConnectivity.SHUTDOWN: Link.FAILED,
    grpc.ChannelConnectivity.IDLE: Link.CONNECTING,  # we always ask to connect, so idle does not last
    grpc.ChannelConnectivity.CONNECTING: Link.CONNECTING,
}
_BY_NUMBER = {state.value[0]: state for state in grpc.ChannelConnectivity}


def connectivity(channel: grpc.Channel, try_to_connect: bool) -> grpc.ChannelConnectivity:
    """The channel's state now (an idle one starts connecting when `try_to_connect`), read at once without a
    watcher thread: the C core's own answer, which grpcio's `subscribe` polls too (~0.2 µs a read)."""
    number = channel._channel.check_connectivity_state(try_to_connect)
    return _BY_NUMBER.get(number, grpc.ChannelConnectivity.CONNECTING)


class Connection:
    """One peer's channel and what the relay calls on it."""

    def __init__(self, peer: Peer, dialer: Dialer) -> None:
        self.peer = peer
        self.dialer = dialer
        self.keepalive_s = dialer.keepalive_s  # of its flow streams; grows when the peer finds it too often
        self.target = dialer.target(peer.name, peer.address)
        self.tls = dialer.secure(self.target)
        self.channel = dialer.channel(self.target, peer.server_name)
        self.link = Link.CONNECTING
        self.stub = observer_pb2_grpc.ObserverStub(self.channel)
        self.refresh()

    @property
    def name(self) -> str:
        return self.peer.name

    @property
    def ready(self) -> bool:
        return self.link is Link.READY

    def get_flows(self, request: observer_pb2.GetFlowsRequest) -> Stream:
        """A GetFlows stream of this peer, on a connection of its own: its responses come as bytes, a read at a
        time, for the relay to forward without decoding (relay/wire.py) and without grpcio's ~40 µs a message
        (common/h2grpc/client.py). The channel stays for the rest: whether the peer is there, and its status."""
        return self.dialer.open_flows(self.target, request.SerializeToString(), self.peer.server_name, self.keepalive_s)

    def calm_down(self) -> None:
        """The peer said our pings were too many (GOAWAY "too_many_pings", a gRPC server's default policy on an
        idle stream): ping it half as often from now on, as gRPC's own clients do."""
        if self.keepalive_s > 0:
            self.keepalive_s *= 2
            log.info("node %s asks for fewer pings: one every %g s", self.peer.name, self.keepalive_s)

    def refresh(self) -> bool:
        """Read the channel's state into `link`, asking an idle channel to connect (one whose connection was
        lost goes idle and stays so until asked; gRPC's retries, on the relay's schedule, only run once it is
        trying); whether the link changed."""
        link = _LINKS[connectivity(self.channel, try_to_connect=self.link is not Link.READY)]
        if link is self.link:
            return False
        log.info("node %s (%s): %s", self.peer.name, self.target, link.value)
        self.link = link
        return True

    def close(self) -> None:
        self.channel.close()


PoolListener = Callable[[str, str], None]  # (event, node name): "added" or "removed"


class PeerPool:
    """The peers by name, each with its Connection; thread-safe, with listeners for peers added and removed."""

    def __init__(self, dialer: Dialer) -> None:
        self._dialer = dialer
        self._cond = threading.Condition()
        self._connections: dict[str, Connection] = {}
        self._listeners: list[PoolListener] = []
        self._closed = False
        self._watcher: threading.Thread | None = None

    # --- membership --------------------------------------------------------------------------------------

    def upsert(self, peer: Peer) -> None:
        """Add a peer, or replace its channel when its address or TLS name changed."""
        with self._cond:
            old = self._connections.get(peer.name)
            if old is not None and old.peer == peer:
                return
            self._connections[peer.name] = Connection(peer, self._dialer)
            self._cond.notify_all()
            if self._watcher is None and not self._closed:
                self._watcher = threading.Thread(target=self._watch, name="peer-links", daemon=True)
                self._watcher.start()
        if old is not None:
            log.info("node %s changed: %s", peer.name, peer.address)
            old.close()
            self._tell("removed", peer.name)
        else:
            log.info("node %s added: %s", peer.name, peer.address)
        self._tell("added", peer.name)

    def remove(self, name: str) -> None:
        with self._cond:
            old = self._connections.pop(name, None)
            self._cond.notify_all()
        if old is not None:
            log.info("node %s removed", name)
            old.close()
            self._tell("removed", name)

    def names(self) -> set[str]:
        with self._cond:
            return set(self._connections)

    def connections(self) -> list[Connection]:
        with self._cond:
            return sorted(self._connections.values(), key=lambda c: c.name)

    def get(self, name: str) -> Connection | None:
        with self._cond:
            return self._connections.get(name)

    def subscribe(self, listener: PoolListener) -> Callable[[], None]:
        """Call listener on every peer added or removed; returns the function that stops that."""
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # --- connection state --------------------------------------------------------------------------------

    def wait_ready(self, name: str, timeout: float) -> Connection | None:
        """The peer's connection once it is ready, waiting up to timeout; None if not ready (or gone)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                connection = self._connections.get(name)
                if connection is None or connection.ready:
                    return connection
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def settle(self, timeout: float) -> None:
        """Wait (up to timeout) until no peer is still making its first connection."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(c.link is Link.CONNECTING for c in self._connections.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
            self._listeners.clear()
            self._cond.notify_all()
            watcher = self._watcher
        if watcher is not None:
            watcher.join()
        for connection in connections:
            connection.close()

    def _watch(self) -> None:
        """Every WATCH_S, each channel's state; waiters are woken when one changed."""
        with self._cond:
            while not self._closed:
                self._cond.wait(WATCH_S)
                changed = [connection.refresh() for connection in self._connections.values()]
                if any(changed):
                    self._cond.notify_all()

    def _tell(self, event: str, name: str) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event, name)
