"""What a lab made, written to /run/flowscope/labs/<name>/state.json as it is made.

`lab down` and `lab status` run in other processes than `lab up`, possibly after it was killed half way, so
the record is saved after every step: whatever exists is already listed. It is a convenience, not the truth:
down also finds the lab's namespaces by name when this file is missing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowscope.lab.daemons import Daemon


@dataclass
class LabState:
    name: str
    nodes: int
    created: float = field(default_factory=time.time)
    netns: list[str] = field(default_factory=list)
    cluster_file: str = ""
    traffic: bool = False
    default_socket: bool = False  # a one-node lab's agent serves on the CLI's default socket (Topology)
    tunnel: str = "disabled"  # how nodes reach each other's pods (Topology.tunnel)
    agents: dict[str, str] = field(default_factory=dict)  # node -> where its agent serves: what status prints
    relay: str = ""  # the relay's address, when the lab has one
    daemons: list[Daemon] = field(default_factory=list)

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        """The saved state, or None when there is none (or it is unreadable)."""
        try:
            raw = json.loads(path.read_text())
            raw["daemons"] = [Daemon(**d) for d in raw.get("daemons", [])]
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None
