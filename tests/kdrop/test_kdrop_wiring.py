"""The agent-side pieces around the kernel drop program, without a kernel: symbol names, ingest from several
ring buffers with the rate-limited count, and reconciling which namespaces it follows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from flowscope.common.names import EVENT_LOST
from flowscope.observer.attachments import Attachments
from flowscope.observer.counts import IngestCounts
from flowscope.observer.datapath.kallsyms import KernelSymbols
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.events import event_dtype
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.ingest import Ingest
from flowscope.observer.ipcache import Network
from flowscope.observer.metadata import Cluster, Endpoint, Node
from flowscope.observer.metadata_watch import MetadataWatcher

DTYPE = event_dtype()

KALLSYMS = """\
ffffffff81000000 T _text
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T udp_rcv
ffffffffc0001000 t nft_do_chain\t[nf_tables]
"""


def test_kernel_symbols_name_code_addresses(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    locate = KernelSymbols(path)
    assert locate(0xFFFFFFFF81000104) == "helper+0x4"
    assert locate(0xFFFFFFFF81000210) == "helper+0x110"  # data symbols are not code: the function before
    assert locate(0xFFFFFFFF81000300) == "udp_rcv+0x0"
    assert locate(0xFFFFFFFFC0001010) == "nft_do_chain [nf_tables]+0x10"
    assert locate(0x1000) is None  # below every symbol
    assert locate(0xFFFFFFFFC0001000 + (2 << 20)) is None  # far past the last one
    assert locate(0) is None


def test_kernel_symbols_hidden_addresses_name_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("0000000000000000 T _text\n0000000000000000 t udp_rcv\n")  # kptr_restrict
    assert KernelSymbols(path)(0xFFFFFFFF81000104) is None


class FakeSource:
    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = batches
        self.timeouts: list[float] = []

    def read_batch(self, timeout: float) -> np.ndarray:
        self.timeouts.append(timeout)
        return self.batches.pop(0) if self.batches else np.empty(0, dtype=DTYPE)


def records(count: int, kind: int) -> np.ndarray:
    batch = np.zeros(count, dtype=DTYPE)
    batch["type"] = kind
    return batch


def test_ingest_reads_every_source_and_counts_rate_limited_drops() -> None:
    ring = FlowRing(63, DTYPE)
    counts = IngestCounts()
    tc, kdrop = FakeSource([records(3, 4)]), FakeSource([records(2, 1)])
    reported = [[0, 0], [5, 7], [5, 7], [9, 7]]  # per CPU, cumulative, as the kernel counts

    def limited() -> list[int]:
        return reported.pop(0) if len(reported) > 1 else reported[0]

    ingest = Ingest([tc, kdrop], ring, counts, lambda: [0, 0], DTYPE, limited)
    ingest._tick()
    ingest._tick()
    ingest._tick()
    assert counts.lost.rate_limited == 12  # 5 + 7, counted once
    ingest.start()  # ticks at once
    time.sleep(0.2)
    ingest.stop()
    ingest.join(timeout=2)
    assert sorted(ring.column("type").tolist()) == [1, 1, 4, 4, 4]
    assert all(t > 0 for t in tc.timeouts[:-1]) and set(kdrop.timeouts) == {0}  # only the first source waits
    assert counts.lost.rate_limited == 16
    assert EVENT_LOST not in ring.column("type").tolist()


class FakeDatapath:
    def attach(self, ifname: str, hooks: tuple[str, ...]) -> None: ...
    def detach(self, ifname: str) -> None: ...
    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None: ...
    def remove_endpoint(self, ifindex: int) -> None: ...
    def replace_ipcache(self, entries: dict[Network, tuple[int, int]]) -> None: ...


class FakeFollower:
    def __init__(self) -> None:
        self.calls: list[dict[int, str]] = []

        self.devices: list[set[int]] = []

    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None:
        self.calls.append(dict(endpoints))

    def follow_devices(self, ifindexes: Iterable[int]) -> None:
        self.devices.append(set(ifindexes))


def test_reconciling_tells_the_kernel_drop_program_this_nodes_namespaces(tmp_path: Path) -> None:
    def endpoint(ep_id: int, node: str, netns: str) -> Endpoint:
        return Endpoint(ep_id, node, "default", f"pod{ep_id}", {}, f"lxc{ep_id}", netns, f"10.0.0.{ep_id % 250}")

    cluster_file = tmp_path / "cluster.json"
    nodes = (Node("node1"), Node("node2"))
    Cluster("c", nodes, (endpoint(1001, "node1", "ns-a"), endpoint(2001, "node2", "ns-b"))).save(cluster_file)
    follower = FakeFollower()
    attachments = Attachments(FakeDatapath(), EndpointRegistry("node1"), None, [follower])
    metadata = MetadataWatcher(cluster_file)
    metadata.subscribe("attachments", attachments.update)
    metadata.poll()
    assert follower.calls == [{1001: "ns-a"}]  # this node's endpoints only (the interfaces need not exist)
    assert follower.devices == [set()]  # none attached: their interfaces do not exist

    time.sleep(0.01)
    Cluster("c", nodes, (endpoint(1002, "node1", "ns-c"), endpoint(1003, "node1", ""))).save(cluster_file)
    metadata.poll()
    assert follower.calls[-1] == {1002: "ns-c"}  # one without a namespace is left out
