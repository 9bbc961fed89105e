"""A node's metrics, assembled: the handlers `--metrics` asks for, the agent's own metrics, and the server.

The agent makes one NodeMetrics when `--metrics-address` is given, hands its subscriber to the ingest loop, and
closes it when it stops. Everything a bad `--metrics` value can break is checked in the constructor, before any
socket is bound.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, ProcessCollector

from flowscope.observer.datapath.bpfsys import enable_stats
from flowscope.observer.metrics.agent_metrics import AgentCollector, AgentParts
from flowscope.observer.metrics.batch import Sources
from flowscope.observer.metrics.labels import DEFAULT_LABEL_SETS
from flowscope.observer.metrics.registry import make_handlers, overflow_counter
from flowscope.observer.metrics.server import MetricsServer
from flowscope.observer.metrics.subscriber import MetricsSubscriber

log = logging.getLogger(__name__)


class NodeMetrics:
    def __init__(
        self,
        address: str,
        handlers: str,
        sources: Sources,
        parts: AgentParts,
        bpf_stats: bool = False,
        label_sets: int = DEFAULT_LABEL_SETS,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        made = make_handlers(handlers, self.registry, overflow_counter(self.registry), label_sets)
        self.subscriber = MetricsSubscriber(made, sources)
        parts.ingested = self.subscriber.ingested
        self.registry.register(AgentCollector(parts))
        ProcessCollector(registry=self.registry)
        self._stats_fd = self._enable_stats() if bpf_stats else None
        self.server = MetricsServer(address, self.registry)
        log.info("metrics: %s", ", ".join(handler.name for handler in made))

    @staticmethod
    def _enable_stats() -> int | None:
        try:
            return enable_stats()
        except OSError as exc:
            log.warning("metrics: BPF statistics could not be turned on (%s): program run times stay 0", exc)
            return None

    def close(self) -> None:
        self.server.close()
        if self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None
