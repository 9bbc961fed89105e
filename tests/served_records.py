"""Real servers over records a test chose: a node agent's gRPC server in this process, its ring holding the
records, and a relay in front of it. For tests of what the servers answer, without a datapath."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from records import TS, lab_registry

from flowscope.observer import events
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.l7.store import L7Store
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.serve import ObserverServer
from flowscope.observer.server.state import NodeState
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayConfig, RelayServer


@contextmanager
def agent_serving(batch: np.ndarray, l7: L7Store | None = None) -> Iterator[Path]:
    """node1's agent server on a unix socket, its ring holding `batch` in that order, a microsecond apart from
    TS (the L7 records' entries in `l7`); yields the socket's path. The folder is short: unix socket paths
    must stay under 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="fs-agent-"))
    try:
        stamped = batch.copy()
        stamped["ts"] = TS + np.arange(len(stamped)) * 1000
        ring = FlowRing(63, events.event_dtype())
        ring.write(stamped)
        registry = lab_registry()
        decoder = FlowDecoder("node1", registry, b"instance")
        decoder.l7 = l7
        server = ObserverServer(
            NodeState("node1", "default", "", ring, decoder, registry), folder / "hubble.sock", None
        )
        server.start()
        try:
            yield folder / "hubble.sock"
        finally:
            server.stop(grace=0.1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def relay_in_front(agent_socket: Path) -> Iterator[str]:
    """A relay on a free localhost port whose one node is the agent at `agent_socket`; yields its address."""
    config = RelayConfig(listen_address="localhost:0", name="relay", peers=[Peer("node1", f"unix://{agent_socket}")])
    relay = RelayServer(config).start()
    try:
        yield f"localhost:{relay.port}"
    finally:
        relay.stop(grace=0.1)
