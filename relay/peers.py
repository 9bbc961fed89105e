"""Where the relay learns which nodes exist: a static list, or an agent's peer.Peer/Notify stream.

The peer service first announces every node (PEER_ADDED), then each change as it happens. When its stream
breaks, the relay keeps the nodes it knows and reconnects with backoff; on reconnection the service announces
them all again, and nodes it no longer announces within RESYNC_S are dropped, so a node deleted while the
relay was not listening does not linger as "unavailable" forever.
"""

from __future__ import annotations

import logging
import threading

import grpc

from flowscope.api.peer import peer_pb2, peer_pb2_grpc
from flowscope.common.addresses import check_dial_address, dial_target
from flowscope.relay.backoff import Backoff
from flowscope.relay.dial import Dialer
from flowscope.relay.pool import Peer, PeerPool

log = logging.getLogger(__name__)

RESYNC_S = 1.0


def parse_static(items: list[str]) -> list[Peer]:
    """`name=address` items (also comma-separated in one item) as peers; a bare address is its own name."""
    peers: list[Peer] = []
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, address = part.partition("=")
            if not sep:
                name, address = part, part
            try:
                if not name:
                    raise ValueError("no name")
                check_dial_address(address)
            except ValueError as exc:
                raise ValueError(f"bad peer {part!r} ({exc}): write name=address, e.g. node1=10.77.0.1:4244") from None
            peers.append(Peer(name, address))
    names = [p.name for p in peers]
    if len(set(names)) != len(names):
        raise ValueError(f"a peer name is given twice: {', '.join(names)}")
    return peers


class PeerServiceFollower(threading.Thread):
    """Follows one agent's peer service and keeps the pool's membership in step with it."""

    def __init__(
        self,
        address: str,
        pool: PeerPool,
        dialer: Dialer,
        server_name: str = "",
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name="peer-service", daemon=True)
        self.target = dial_target(address)
        self._pool = pool
        self._dialer = dialer
        self._server_name = server_name
        self._backoff = backoff or Backoff()
        self._stop_event = threading.Event()
        self._call: grpc.Future | None = None
        self._mine: set[str] = set()  # the peers this service announced (static ones are not ours to drop)
        self._lock = threading.Lock()
        self.connected = threading.Event()  # set while the stream is up (for tests and start-up)

    def stop(self) -> None:
        self._stop_event.set()
        call = self._call
        if call is not None:
            call.cancel()

    def run(self) -> None:
        channel = self._dialer.channel(self.target, self._server_name)
        stub = peer_pb2_grpc.PeerStub(channel)
        try:
            while not self._stop_event.is_set():
                error = self._follow(stub)
                self.connected.clear()
                if self._stop_event.is_set():
                    break
                wait = self._backoff.next()
                log.warning("peer service %s: %s; retrying in %.1fs", self.target, error, wait)
                self._stop_event.wait(wait)
        finally:
            channel.close()

    def _follow(self, stub: peer_pb2_grpc.PeerStub) -> str:
        """Read notifications until the stream ends; returns why it ended."""
        call = stub.Notify(peer_pb2.NotifyRequest(), wait_for_ready=False)
        self._call = call
        seen: set[str] = set()
        resync = threading.Timer(RESYNC_S, self._drop_unannounced, [seen])
        resync.daemon = True
        try:
            for change in call:
                if not self.connected.is_set():
                    self.connected.set()
                    self._backoff.reset()
                    resync.start()
                with self._lock:
                    self._apply(change, seen)
            return "stream ended"
        except grpc.RpcError as exc:
            return exc.details() or exc.code().name
        finally:
            resync.cancel()
            self._call = None

    def _apply(self, change: peer_pb2.ChangeNotification, seen: set[str]) -> None:
        if change.type in (peer_pb2.PEER_ADDED, peer_pb2.PEER_UPDATED):
            if not change.name or not change.address:
                log.warning("peer service %s: ignoring a peer without name or address: %s", self.target, change)
                return
            seen.add(change.name)
            self._mine.add(change.name)
            self._pool.upsert(Peer(change.name, change.address, change.tls.server_name))
        elif change.type == peer_pb2.PEER_DELETED:
            seen.discard(change.name)
            self._mine.discard(change.name)
            self._pool.remove(change.name)

    def _drop_unannounced(self, seen: set[str]) -> None:
        with self._lock:
            gone = self._mine - seen
            self._mine -= gone
        for name in sorted(gone):
            log.info("peer service %s no longer announces %s", self.target, name)
            self._pool.remove(name)
