"""What the agent is told about the cluster: its nodes and their endpoints (pods).

In Kubernetes this comes from the API server; here it comes from a JSON file that `flowscope lab` writes (or a
person writes by hand), which the agent re-reads whenever it changes (observer/metadata_watch.py, its one reader).
Every agent reads the whole cluster: it attaches to its own node's endpoints and uses the others to name the far
end of a flow, as Cilium's ipcache does.

File format (JSON):
    {"cluster": "lab",
     "nodes": [{"name": "node1", "device": "eth0", "ipv4": "10.77.0.1", "ipv6": "fd77::1",
                "address": "10.77.0.1:4244", "labels": {"role": "worker"}}],
     "endpoints": [{"id": 1001, "node": "node1", "namespace": "default", "pod": "client-7d9f",
                    "labels": {"app": "client"}, "interface": "lxc1001", "netns": "fs-lab-client",
                    "ipv4": "10.200.1.11", "ipv6": "fd00:200:1::11"}]}
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Reserved identities, as Cilium numbers them.
IDENTITY_UNKNOWN = 0
IDENTITY_HOST = 1
IDENTITY_WORLD = 2
IDENTITY_REMOTE_NODE = 6
RESERVED_IDENTITY_NAMES = {IDENTITY_HOST: "host", IDENTITY_WORLD: "world", IDENTITY_REMOTE_NODE: "remote-node"}

_FIRST_USER_IDENTITY = 256
_IDENTITY_SPACE = (1 << 24) - _FIRST_USER_IDENTITY


def identity_of(labels: Mapping[str, str]) -> int:
    """The numeric identity of a set of labels.

    Derived from the labels alone, so every node (and every restart) gives the same labels the same number
    without a shared allocator; Cilium allocates through the kvstore instead. Identities start at 256 like
    Cilium's, below which numbers are reserved (host, world, ...).
    """
    text = "\n".join(f"{key}={labels[key]}" for key in sorted(labels))
    return _FIRST_USER_IDENTITY + zlib.crc32(text.encode()) % _IDENTITY_SPACE


def label_strings(labels: Mapping[str, str], source: str = "k8s") -> list[str]:
    """Labels the way Hubble shows them: `k8s:app=client`, sorted."""
    return [f"{source}:{key}={labels[key]}" for key in sorted(labels)]


@dataclass(frozen=True)
class Node:
    name: str
    device: str = "eth0"
    ipv4: str = ""
    ipv6: str = ""
    address: str = ""  # where its observer listens, host:port or unix:///path
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    id: int
    node: str
    namespace: str
    pod: str
    labels: dict[str, str]
    interface: str  # the host-side veth, in the node's network namespace
    netns: str = ""
    ipv4: str = ""
    ipv6: str = ""

    @property
    def identity(self) -> int:
        return identity_of({**self.labels, "io.kubernetes.pod.namespace": self.namespace})

    @property
    def ips(self) -> list[str]:
        return [ip for ip in (self.ipv4, self.ipv6) if ip]


@dataclass(frozen=True)
class Cluster:
    name: str = "default"
    nodes: tuple[Node, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def node_labels(self, name: str) -> list[str]:
        """A node's labels as Hubble puts them on its flows (Flow.node_labels): `key=value`, sorted."""
        node = self.node(name)
        return [] if node is None else [f"{key}={node.labels[key]}" for key in sorted(node.labels)]

    def endpoints_on(self, node: str) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.node == node]

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster": self.name,
                "nodes": [asdict(n) for n in self.nodes],
                "endpoints": [asdict(e) for e in self.endpoints],
            },
            indent=2,
        )

    def save(self, path: Path) -> None:
        """Write atomically, so an agent re-reading the file never sees half of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_json(cls, text: str) -> Cluster:
        raw = json.loads(text)
        return cls(
            name=raw.get("cluster", "default"),
            nodes=tuple(Node(**n) for n in raw.get("nodes", [])),
            endpoints=tuple(Endpoint(**e) for e in raw.get("endpoints", [])),
        )

    @classmethod
    def load(cls, path: Path) -> Cluster:
        return cls.from_json(path.read_text())
