"""What of the agent changes while it runs: the network policy, the monitor aggregation settings, and the
once-a-tick housekeeping both need (the conntrack sweep; recompiling the policy when the cluster changed).

The agent makes one Control after loading the datapath, serves its gRPC service where only trusted callers reach
(observer/server/serve.py: the unix socket, or a control listener with mutual TLS; never the public port), and
closes it before unloading the datapath.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from flowscope.common.aggregation import AggregationSettings
from flowscope.observer.aggregation import Aggregation
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.connections import tracked_connections
from flowscope.observer.datapath.inventory import InventoryReader
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.policy import PolicyError, PolicyManager
from flowscope.observer.policy.manager import Status
from flowscope.observer.server.connection_list import ConnectionSource
from flowscope.observer.server.control_service import control_service
from flowscope.observer.server.serve import Service

log = logging.getLogger(__name__)

TICK_S = 1.0


class Control:
    def __init__(
        self,
        datapath: Datapath,
        registry: EndpointRegistry,
        aggregation: AggregationSettings,
        policy_file: Path | None = None,
        on_policy_change: Callable[[Status, Status], None] = lambda before, after: None,
    ) -> None:
        self.aggregation = Aggregation(datapath, aggregation)
        self.policy = PolicyManager(datapath, registry, on_policy_change)
        if policy_file is not None:
            try:
                self.policy.apply(policy_file.read_text(), str(policy_file))
            except PolicyError as exc:  # the agent does not start on a policy it cannot enforce
                raise PolicyError(f"{policy_file}: {exc}") from None
            log.info("policy %s in force (revision %d)", policy_file, self.policy.status.revision)
        self.inventory = _inventory_reader(datapath)
        self.connections = ConnectionSource(  # `flowscope ct`
            node=lambda: registry.node_name,
            connections=lambda: tracked_connections(datapath.conntrack, datapath.lb),
            services=lambda: registry.snapshot.services,
            rule_name=self.policy.rule_name,
        )
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)

    def service(self) -> Service:
        return control_service(self.policy, self.aggregation, self.inventory.read, self.connections)

    def start(self) -> None:
        self._thread.start()

    def tick(self) -> None:
        """Report quiet connections' counts; follow the cluster's endpoints with the policy."""
        self.aggregation.sweep()
        if self.policy.refresh():
            log.info("policy recompiled for the cluster's endpoints (revision %d)", self.policy.status.revision)

    def _loop(self) -> None:
        while not self._stopped.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # keep ticking; say what went wrong
                log.exception("control tick failed")

    def close(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * TICK_S)


def _inventory_reader(datapath: Datapath) -> InventoryReader:
    """`flowscope bpf`'s reader: the stages the loader puts in `calls`, and the conntrack tables' use, which
    only their own reader can tell (their empty slots are zeros in an array)."""

    def used(family: int) -> Callable[[], int]:
        return lambda: int((datapath.conntrack.read()[0]["family"] == family).sum())

    return InventoryReader(stages={"calls": datapath.tail_call_slots}, fills={"ct4": used(4), "ct6": used(6)})
