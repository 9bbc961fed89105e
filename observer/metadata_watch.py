"""The one reader of the cluster metadata file: it notices each change, parses it once, and hands it on.

Everything of the agent that depends on the cluster (the endpoint registry, the ipcache, the attachments, the
peer service, the node's own name for its cluster and its address) subscribes here instead of reading the file
itself, so all of them see the same metadata, in the same order, from one parse.

The file is polled, twice a second: a stat decides whether it may have changed (inode, so an atomic replace
counts, then mtime and size), and the content decides whether it did. A file written within the last couple of
seconds is read again even when its stat looks the same, since a rewrite of the same size inside one tick of
the file system's clock leaves the stat unchanged.

A file that cannot be read or parsed keeps the last good metadata in force and is reported in the log once (a
later good file ends the complaint). A subscriber that fails is logged and skipped; the others still get the
metadata, since each of them is independent of the rest.

    watcher = MetadataWatcher(cluster_file)
    watcher.subscribe("endpoint registry", registry.update)
    watcher.start()       # reads the file now, then follows it
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowscope.observer.metadata import Cluster

log = logging.getLogger(__name__)

POLL_S = 0.5
RECENT_S = 2.0  # a file modified this recently is re-read even when its stat looks unchanged

Subscriber = Callable[[Cluster], object]


class MetadataError(Exception):
    """The cluster file exists but does not hold cluster metadata."""


@dataclass(frozen=True)
class _Subscription:
    name: str
    deliver: Subscriber


class MetadataWatcher:
    """Follows one cluster file (or none: then nothing is ever delivered) for any number of subscribers."""

    def __init__(self, path: Path | None, poll_s: float = POLL_S) -> None:
        self.path = path
        self._poll_s = poll_s
        self._current: Cluster | None = None
        self._subscriptions: list[_Subscription] = []
        self._delivering = threading.RLock()  # one delivery at a time, and none while someone subscribes
        self._stamp: tuple[int, int, int] | None = None
        self._content: bytes | None = None  # the last content read, good or bad
        self._complaint: str | None = None  # what is wrong with the file, once said
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="metadata-watch", daemon=True)

    @property
    def current(self) -> Cluster | None:
        """The metadata in force: the last good content of the file, None before there was any."""
        return self._current

    def subscribe(self, name: str, deliver: Subscriber) -> None:
        """Call `deliver` with the metadata in force now (if any) and with every later one, in that order.

        `name` is what the log calls the subscriber when it fails.
        """
        subscription = _Subscription(name, deliver)
        with self._delivering:
            self._subscriptions.append(subscription)
            if self._current is not None:
                self._deliver_to(subscription, self._current)

    def start(self) -> None:
        """Read the file now, then follow it. The agent does not start on a file it cannot read, as it does
        not start on a policy it cannot enforce; later a bad file only keeps the last good metadata."""
        self._check()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def poll(self) -> bool:
        """Look at the file once; True when it brought new metadata (which every subscriber has been given)."""
        try:
            return self._check()
        except MetadataError as exc:
            self._complain(str(exc))
            return False

    def _follow(self) -> None:
        while not self._stopped.wait(self._poll_s):
            self.poll()

    def _check(self) -> bool:
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._complain(f"{self.path} does not exist (yet)", level=logging.INFO)
            return False
        except OSError as exc:
            raise MetadataError(f"cannot read {self.path}: {exc}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp and time.time_ns() - st.st_mtime_ns > RECENT_S * 1e9:
            return False
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:  # replaced between stat and read: the next round reads the new one
            return False
        except OSError as exc:
            raise MetadataError(f"cannot read {self.path}: {exc}") from None
        self._stamp = stamp
        if content == self._content:
            return False
        self._content = content
        try:
            cluster = Cluster.from_json(content.decode())
        except (ValueError, TypeError) as exc:  # not JSON, not UTF-8, or fields a Node or Endpoint lacks
            raise MetadataError(f"{self.path} is not cluster metadata: {exc}") from None
        self._complaint = None
        counts = (len(cluster.nodes), len(cluster.endpoints), len(cluster.services))
        log.info("cluster %r: %d nodes, %d endpoints, %d services", cluster.name, *counts)
        self._publish(cluster)
        return True

    def _publish(self, cluster: Cluster) -> None:
        with self._delivering:
            self._current = cluster
            for subscription in self._subscriptions:
                self._deliver_to(subscription, cluster)

    @staticmethod
    def _deliver_to(subscription: _Subscription, cluster: Cluster) -> None:
        try:
            subscription.deliver(cluster)
        except Exception:
            log.exception("%s could not take the new cluster metadata", subscription.name)

    def _complain(self, reason: str, level: int = logging.ERROR) -> None:
        """Say what is wrong with the file once, not on every poll; the metadata in force stays."""
        if reason == self._complaint:
            return
        self._complaint = reason
        keeping = "keeping the last good metadata" if self._current is not None else "no metadata yet"
        log.log(level, "%s (%s)", reason, keeping)
