"""The one watcher of the cluster file: each change, parsed once, reaches every subscriber in order; a bad file or
a failing subscriber changes nothing for the rest."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from waiting import wait_for

from flowscope.api.peer import peer_pb2
from flowscope.observer.attachments import Attachments
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.ipcache import ClusterIpcache, Network
from flowscope.observer.metadata import IDENTITY_HOST, Cluster, Endpoint, Node
from flowscope.observer.metadata_watch import MetadataError, MetadataWatcher
from flowscope.observer.server.peer import PeerService


def lab(name: str = "lab", address: str = "10.77.0.1:4244", pods: int = 1) -> Cluster:
    nodes = (Node("node1", ipv4="10.77.0.1", address=address), Node("node2", ipv4="10.77.0.2"))
    endpoints = tuple(
        Endpoint(1000 + n, "node1", "default", f"pod{n}", {"app": f"a{n}"}, f"lxc{1000 + n}", ipv4=f"10.200.1.{n}")
        for n in range(1, pods + 1)
    )
    return Cluster(name, nodes, endpoints)


class RecordingDatapath:
    """The datapath calls the ipcache and the attachments make, recorded (the interfaces do not exist)."""

    def __init__(self) -> None:
        self.ipcache: dict[Network, tuple[int, int]] = {}

    def replace_ipcache(self, entries: dict[Network, tuple[int, int]]) -> None:
        self.ipcache = dict(entries)

    def attach(self, ifname: str, hooks: tuple[str, ...]) -> None: ...
    def detach(self, ifname: str) -> None: ...
    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None: ...
    def remove_endpoint(self, ifindex: int) -> None: ...


class Follower:
    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None: ...
    def follow_devices(self, ifindexes: Iterable[int]) -> None: ...


def test_one_change_of_the_file_reaches_every_subscriber_in_order(tmp_path: Path) -> None:
    file = tmp_path / "cluster.json"
    lab().save(file)
    watcher = MetadataWatcher(file)
    watcher.start()
    try:
        order: list[str] = []
        datapath = RecordingDatapath()
        registry = EndpointRegistry("node1")
        ipcache = ClusterIpcache(datapath, "node1")
        attachments = Attachments(datapath, registry, None, [Follower()])
        peers = PeerService()

        def subscribe(name: str, deliver: Callable[[Cluster], object]) -> None:
            def recorded(cluster: Cluster) -> None:
                order.append(name)
                deliver(cluster)

            watcher.subscribe(name, recorded)

        subscribe("registry", registry.update)
        subscribe("ipcache", ipcache.update)
        subscribe("attachments", attachments.update)
        subscribe("peers", peers.update)
        assert order == ["registry", "ipcache", "attachments", "peers"]  # each got the metadata in force at once

        order.clear()
        lab(name="other", address="10.77.0.1:5000", pods=2).save(file)
        assert watcher.poll()
        assert order == ["registry", "ipcache", "attachments", "peers"]
        assert registry.snapshot.cluster.name == "other"
        assert set(registry.snapshot.local) == {1001, 1002}
        assert datapath.ipcache[ipaddress.ip_network("10.200.1.2")][1] == 1002
        assert datapath.ipcache[ipaddress.ip_network("10.77.0.1")] == (IDENTITY_HOST, 0)
        assert peers._peers["node1"].address == "10.77.0.1:5000"
        assert peers._peers["node1"].type == peer_pb2.PEER_ADDED

        order.clear()
        assert not watcher.poll()  # nothing changed: nobody is told again
        lab(name="other", address="10.77.0.1:5000", pods=2).save(file)
        assert not watcher.poll()  # rewritten with the same content: nothing new either
        assert order == []
    finally:
        watcher.stop()


def test_the_watchers_thread_follows_the_file(tmp_path: Path) -> None:
    file = tmp_path / "cluster.json"
    lab().save(file)
    watcher = MetadataWatcher(file, poll_s=0.02)
    seen: list[str] = []
    watcher.subscribe("names", lambda cluster: seen.append(cluster.name))
    watcher.start()
    try:
        lab(name="renamed").save(file)
        wait_for(lambda: seen == ["lab", "renamed"])
    finally:
        watcher.stop()


def test_a_rewrite_in_the_same_clock_tick_is_noticed_by_its_content(tmp_path: Path) -> None:
    file = tmp_path / "cluster.json"
    lab(address="10.77.0.1:4244").save(file)
    watcher = MetadataWatcher(file)
    watcher.start()
    before = os.stat(file)
    with file.open("r+") as f:  # in place, same size, and the same mtime as a coarse clock would leave it
        f.write(file.read_text().replace("4244", "4245"))
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(file).st_size == before.st_size
    assert watcher.poll()
    current = watcher.current
    assert current is not None and current.nodes[0].address == "10.77.0.1:4245"


def test_a_failing_subscriber_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "cluster.json"
    lab().save(file)
    watcher = MetadataWatcher(file)
    watcher.start()
    seen: list[str] = []

    def broken(cluster: Cluster) -> None:
        raise RuntimeError("broken subscriber")

    watcher.subscribe("first", lambda cluster: seen.append(f"first {cluster.name}"))
    with caplog.at_level(logging.ERROR):
        watcher.subscribe("broken", broken)
    watcher.subscribe("last", lambda cluster: seen.append(f"last {cluster.name}"))
    lab(name="next").save(file)
    assert watcher.poll()
    assert seen == ["first lab", "last lab", "first next", "last next"]
    assert "broken could not take the new cluster metadata" in caplog.text


def test_a_bad_file_keeps_the_last_good_metadata_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "cluster.json"
    lab().save(file)
    watcher = MetadataWatcher(file)
    watcher.start()
    seen: list[str] = []
    watcher.subscribe("names", lambda cluster: seen.append(cluster.name))

    with caplog.at_level(logging.INFO, logger="flowscope.observer.metadata_watch"):
        file.write_text('{"cluster": "half", "nodes": [')  # not JSON
        for _ in range(3):
            assert not watcher.poll()
        file.write_text('{"cluster": "x", "nodes": [{"nom": "node1"}]}')  # JSON, but not a node
        assert not watcher.poll()
        file.unlink()
        assert not watcher.poll()
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(complaints) == 2, complaints
    assert "is not cluster metadata" in complaints[0] and "keeping the last good metadata" in complaints[0]
    assert "does not exist" in caplog.text
    current = watcher.current
    assert current is not None and current.name == "lab" and seen == ["lab"]

    lab(name="good again").save(file)
    assert watcher.poll()
    assert seen == ["lab", "good again"]


def test_the_agent_does_not_start_on_a_file_it_cannot_read(tmp_path: Path) -> None:
    file = tmp_path / "cluster.json"
    file.write_text("nodes: [node1]")
    with pytest.raises(MetadataError, match="is not cluster metadata"):
        MetadataWatcher(file).start()


def test_without_a_file_or_before_it_exists_nothing_is_delivered(tmp_path: Path) -> None:
    seen: list[str] = []
    none = MetadataWatcher(None)
    none.subscribe("names", lambda cluster: seen.append(cluster.name))
    assert not none.poll() and none.current is None

    file = tmp_path / "cluster.json"
    later = MetadataWatcher(file)
    later.start()
    later.subscribe("names", lambda cluster: seen.append(cluster.name))
    assert not later.poll() and seen == []
    lab().save(file)
    assert later.poll() and seen == ["lab"]
    later.stop()
