"""What the gRPC services read from the running agent, gathered in one place.

The services never reach into the agent's threads; the agent fills this object (ring, decoder, registry,
the ingest loop's counts) and the services read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common import version
from flowscope.observer.agent_events import AgentEvents
from flowscope.observer.counts import IngestCounts
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.event_ring import EventRing
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder

VERSION = f"flowscope {version.VERSION}"


@dataclass
class NodeState:
    node_name: str
    cluster_name: str
    address: str
    ring: FlowRing
    decoder: FlowDecoder
    registry: EndpointRegistry
    started_ns: int = field(default_factory=time.time_ns)
    counts: IngestCounts = field(default_factory=IngestCounts)  # written by ingest, read here
    stopping: threading.Event = field(default_factory=threading.Event)
    tls_enabled: bool = False
    agent_events: AgentEvents = field(default_factory=AgentEvents)
    debug_events: EventRing[flow_pb2.DebugEvent] = field(default_factory=EventRing)  # observer/debug_events.py
    exporters: Callable[[], list[observer_pb2.ExporterStatus]] = list  # flow logs and history, as they are now

    @property
    def uptime_ns(self) -> int:
        return time.time_ns() - self.started_ns
