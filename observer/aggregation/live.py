"""The agent's side of monitor aggregation: settings written into the datapath's runtime config, and the
periodic sweep that reports what quiet connections counted and never reported (observer/datapath/conntrack.py).

The settings change while the agent runs, without reloading any program: they are fields of the `config` map
the programs read on every packet. The sweep runs at every level, because counts a connection left behind
under medium must still be reported after someone switched to none.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Protocol

from flowscope.common.aggregation import AggregationSettings

if TYPE_CHECKING:  # only its types: importing the datapath package loads bcc
    from flowscope.observer.datapath.maps import RuntimeConfig

log = logging.getLogger(__name__)


class Conntrack(Protocol):
    def sweep(self, interval_ns: int, now_ns: int | None = None) -> int: ...


class AggregationDatapath(Protocol):
    @property
    def conntrack(self) -> Conntrack: ...
    def update_config(self, **changes: int) -> RuntimeConfig: ...


class Aggregation:
    def __init__(self, datapath: AggregationDatapath, settings: AggregationSettings) -> None:
        """Write `settings` into the datapath at once, whatever they are: a config never written is all zeros,
        which the programs read as level none (and no flags), not as these settings' defaults."""
        self._datapath = datapath
        self._lock = threading.Lock()
        self._settings = settings
        datapath.update_config(**settings.runtime())

    @property
    def settings(self) -> AggregationSettings:
        return self._settings

    def set(self, key: str, value: str) -> AggregationSettings:
        """Change one setting by its flag name (ValueError for a bad one); in force from the next packet."""
        with self._lock:
            settings = self._settings.with_value(key, value)
            self._datapath.update_config(**settings.runtime())
            self._settings = settings
        log.info("monitor aggregation: %s", ", ".join(f"{k}={v}" for k, v in settings.values().items()))
        return settings

    def sweep(self) -> int:
        """Report counts older than the interval that no packet reported; how many records that made."""
        return self._datapath.conntrack.sweep(self._settings.interval_ms * 1_000_000)
