"""Network namespaces for tests: named fs-t<pid>-..., entered by one thread, always removed.

tests/conftest.py sweeps namespaces whose pid is gone, so even a test killed mid-way leaves nothing behind
for long.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flowscope.lab.netns import inside

__all__ = ["VethPair", "inside", "namespaces", "netns_name", "run"]


def netns_name(suffix: str) -> str:
    return f"fs-t{os.getpid()}-{suffix}"


def run(*argv: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (in a namespace), with output captured as text."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=check, timeout=60)


@contextmanager
def namespaces(*suffixes: str) -> Iterator[list[str]]:
    """Fresh network namespaces (loopback up), deleted at the end whatever happens."""
    names: list[str] = []
    try:
        for suffix in suffixes:
            name = netns_name(suffix)
            run("ip", "netns", "add", name)
            names.append(name)
            run("ip", "link", "set", "lo", "up", netns=name)
        yield names
    finally:
        for name in names:
            for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True, check=False)
            run("ip", "netns", "del", name, check=False)


@dataclass(frozen=True)
class VethPair:
    """A pod namespace and a node namespace joined by a veth: `host_if` in the node, eth0 in the pod."""

    node: str
    pod: str
    host_if: str = "fslxc0"
    node_v4: str = "192.0.2.1"
    pod_v4: str = "192.0.2.2"
    node_v6: str = "2001:db8:f5::1"
    pod_v6: str = "2001:db8:f5::2"

    def host_ifindex(self) -> int:
        out = run("cat", f"/sys/class/net/{self.host_if}/ifindex", netns=self.node).stdout
        return int(out)
