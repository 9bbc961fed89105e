"""The agent's flow-log exporters: one ingest subscriber in front of all of them, changed while it runs.

The ingest loop's subscribers are fixed when it starts, so the exporters sit behind one subscriber, FlowLogs,
that hands each batch to the exporters of the moment (a tuple replaced whole: the ingest thread reads it without
a lock). Exporters are kept by name: `apply` starts the new ones, replaces those whose settings changed and
closes the ones gone, and leaves the others as they are, files open.

The dynamic configuration (--flowlogs-config) is watched by polling its modification time once a second, as
a file that tools replace whole (a ConfigMap's symlink swap) is best watched. A file that cannot be used is
logged with the line at fault and ignored: the exporters of the last good one keep running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flowscope.api.observer import observer_pb2
from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportCounts, ExportSubscriber, Selection
from flowscope.observer.exporter.file import FileSink
from flowscope.observer.exporter.flowlogs_config import ConfigError, parse_flowlogs
from flowscope.observer.exporter.settings import ExportSettings, FileExport
from flowscope.observer.parser import FlowDecoder

log = logging.getLogger(__name__)

POLL_S = 1.0


class FlowLogs:
    """Every file exporter of the agent, as one ingest subscriber (it must follow the flow ring's write)."""

    sees_lost_events = True  # its exporters write the kernel buffer's LostEvents (observer/ingest.py)

    def __init__(self, decoder: FlowDecoder, written: Callable[[], int], lost: LostCounts) -> None:
        self._decoder = decoder
        self._written = written
        self._lost = lost
        self._exporters: dict[str, tuple[FileExport, ExportSubscriber]] = {}
        self._fanout: tuple[ExportSubscriber, ...] = ()
        self._lock = threading.Lock()  # apply() and close() against each other; never taken by the ingest thread

    def __call__(self, batch: np.ndarray) -> None:
        for exporter in self._fanout:
            exporter(batch)

    def counts(self) -> dict[str, ExportCounts]:
        return {name: subscriber.counts for name, (_, subscriber) in self._exporters.items()}

    def stopped(self) -> dict[str, bool]:
        return {name: subscriber.stopped for name, (_, subscriber) in self._exporters.items()}

    def statuses(self) -> list[observer_pb2.ExporterStatus]:
        """Each running exporter's status, by name (any thread: the fan-out tuple is replaced whole). An exporter
        replaced by a changed configuration counts again from zero."""
        return [subscriber.status() for subscriber in sorted(self._fanout, key=lambda s: s.name)]

    def apply(self, wanted: list[FileExport]) -> None:
        """Run exactly these exporters: start, replace (settings changed) or close by name. Raises ValueError
        (nothing changed) when an exporter's filters cannot be compiled."""
        with self._lock:
            made = {
                export.name: self._start(export)
                for export in wanted
                if export.name not in self._exporters or self._exporters[export.name][0] != export
            }
            gone = [name for name in self._exporters if name not in {export.name for export in wanted}]
            replaced = [name for name in made if name in self._exporters]
            retired = [self._exporters.pop(name)[1] for name in gone + replaced]
            for export in wanted:
                if export.name in made:
                    self._exporters[export.name] = (export, made[export.name])
            self._fanout = tuple(subscriber for _, subscriber in self._exporters.values())
        for subscriber in retired:
            subscriber.close()
        for name in made:
            log.info("flow log %s %s: %s", name, "changed" if name in replaced else "started", self._where(name))
        for name in gone:
            log.info("flow log %s removed", name)

    def close(self) -> None:
        with self._lock:
            retired = [subscriber for _, subscriber in self._exporters.values()]
            self._exporters.clear()
            self._fanout = ()
        for subscriber in retired:
            subscriber.close()

    def _start(self, export: FileExport) -> ExportSubscriber:
        selection = Selection(export.spec, self._decoder)  # FilterError (a ValueError) before anything starts
        sink = FileSink(export.path, export.rotation)
        return ExportSubscriber(export.name, selection, sink, self._written, self._lost)

    def _where(self, name: str) -> str:
        return self._exporters[name][0].path


class ConfigWatcher:
    """Applies the dynamic configuration file to `flow_logs` now and whenever its modification time changes."""

    def __init__(self, path: Path, flow_logs: FlowLogs, static: list[FileExport], poll_s: float = POLL_S) -> None:
        self._path = path
        self._flow_logs = flow_logs
        self._static = static
        self._poll_s = poll_s
        self._seen: tuple[int, int] | None = None
        self._stopping = threading.Event()
        self.reloads = 0  # configurations applied
        self.refused = 0  # configurations refused (the old exporters kept)
        self.check()
        self._thread = threading.Thread(target=self._run, name="flowlogs config", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Apply the file if it changed since the last look (a missing file: no dynamic exporters)."""
        try:
            stat = self._path.stat()
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        if seen == self._seen and self.reloads + self.refused:
            return
        self._seen = seen
        try:
            exporters = parse_flowlogs(self._path.read_text(), str(self._path)) if seen is not None else []
            static_names = {export.name for export in self._static}
            clash = next((export for export in exporters if export.name in static_names), None)
            if clash is not None:
                raise ConfigError(f"{self._path}: the name {clash.name!r} is the --export-file exporter's")
            self._flow_logs.apply([*self._static, *exporters])
        except (OSError, ValueError) as exc:
            self.refused += 1
            log.error("flow log configuration refused, the running exporters are kept: %s", exc)
            if not self.reloads:  # refused from the start: the --export-file exporter runs all the same
                self._flow_logs.apply(self._static)
            return
        self.reloads += 1

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("flow log configuration: reload failed")


class AgentFlowLogs:
    """What the agent holds: the exporters' subscriber, and the watcher of their configuration if any."""

    def __init__(self, settings: ExportSettings, decoder: FlowDecoder, written: Callable[[], int], lost: LostCounts):
        self.flow_logs = FlowLogs(decoder, written, lost)
        static = [settings.file] if settings.file is not None else []
        self.watcher: ConfigWatcher | None = None
        if settings.flowlogs_config is not None:
            self.watcher = ConfigWatcher(settings.flowlogs_config, self.flow_logs, static)
        else:
            self.flow_logs.apply(static)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        self.flow_logs.close()
