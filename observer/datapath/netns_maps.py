"""The node's network namespaces, as the programs that follow packets anywhere in the kernel need them.

A tracepoint program (kdrop.c's kfree_skb, pathtrace.c's packet-path hops) sees every packet of the machine,
every lab node's and every pod's; what makes a packet this node's is the namespace it is in. Each such program
has a hash map `inode -> endpoint id` (0: the node itself) that the agent keeps equal to the node's namespace
and its endpoints', looked up by name on every reconcile (a pod that comes back in a new namespace of the same
name is followed there; one whose namespace is gone is dropped).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")


def netns_inode(netns: str | Path) -> int | None:
    """The inode of a network namespace given by name (/run/netns/<name>) or path; None if it is gone."""
    path = Path(netns)
    if not path.is_absolute():
        path = NETNS_DIR / path
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def own_netns_inode() -> int:
    """The calling thread's network namespace: the node's, when the agent runs in it."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def node_namespaces(node_netns: int, endpoints: Mapping[int, str]) -> dict[int, int]:
    """The node's namespace (as endpoint 0) and those of these endpoints (endpoint id -> netns name or path)
    that exist now: inode -> endpoint id."""
    wanted = {node_netns: 0}
    for ep_id, netns in endpoints.items():
        inode = netns_inode(netns) if netns else None
        if inode is not None:
            wanted[inode] = ep_id
    return wanted


def write_namespaces(table: Any, namespaces: Mapping[int, int]) -> None:
    """Make a bcc `inode -> endpoint id` hash map hold exactly `namespaces`, writing only what changed."""
    current = {int(key.value): int(value.value) for key, value in table.items()}
    for inode, ep_id in namespaces.items():
        if current.get(inode) != ep_id:
            table[table.Key(inode)] = table.Leaf(ep_id)
    for inode in current.keys() - namespaces.keys():
        with contextlib.suppress(KeyError):
            del table[table.Key(inode)]
