"""The node agent: everything of one node's observer, started and stopped in the right order.

Start: take the node's lock (one agent per network namespace), reclaim what a killed agent left, load the
kernel drop program and the datapath, attach to the node's device and endpoints, start reading events, then
serve. Stop (SIGINT, SIGTERM, or leaving the `with`): stop serving, detach everything, unload. A kill -9 skips
the stop; the next start's reclaim removes what it left, which is why reclaim comes before anything is attached.
(The kernel drop program needs no reclaim: its attachment is a perf event that dies with the process.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import numpy as np

from flowscope.common.aggregation import AggregationSettings
from flowscope.common.capture import DEFAULT_CAPLEN, check_caplen
from flowscope.common.closing import Closing
from flowscope.common.l7_ports import DEFAULT_L7_PORTS, L7Port, parse_l7_ports
from flowscope.common.paths import DEFAULT_SOCKET, RUN_DIR, agent_lock_file, agent_lock_files
from flowscope.common.streams import STALL_S
from flowscope.common.tls import ServerTLS
from flowscope.observer.agent_events import ClusterEvents
from flowscope.observer.attachments import Attachments
from flowscope.observer.control import Control
from flowscope.observer.datapath import Datapath, DatapathConfig, kdrop, pins, reclaim
from flowscope.observer.datapath.btf import running_kernel
from flowscope.observer.datapath.cached_object import precompile
from flowscope.observer.datapath.compile_cache import DEFAULT_FOLDER as COMPILE_CACHE_FOLDER
from flowscope.observer.datapath.compile_cache import CompileCache
from flowscope.observer.datapath.compiler_memory import release_compiler_memory
from flowscope.observer.datapath.kallsyms import KernelSymbols
from flowscope.observer.datapath.kdrop import KernelDropConfig, KernelDrops
from flowscope.observer.datapath.loader import DatapathSource
from flowscope.observer.datapath.pathtrace import PathTracer
from flowscope.observer.datapath.reply_marks import ReplyMarks
from flowscope.observer.debug_events import DebugEvents
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.events import event_dtype
from flowscope.observer.exporter.settings import ExportSettings
from flowscope.observer.flow_ring import FlowRing, check_capacity
from flowscope.observer.history.clickhouse import check_url as check_clickhouse_url
from flowscope.observer.history.writer import WriterOptions
from flowscope.observer.ingest import BatchSource, Ingest
from flowscope.observer.ipcache import ClusterIpcache
from flowscope.observer.l7.counts import L7Counts
from flowscope.observer.l7.names import NameCache, NameSets
from flowscope.observer.l7.source import L7Source, Redaction
from flowscope.observer.l7.store import DEFAULT_CAPACITY as L7_STORE_SIZE
from flowscope.observer.l7.store import L7Store
from flowscope.observer.metadata import Cluster
from flowscope.observer.metadata_watch import MetadataWatcher
from flowscope.observer.metrics import DEFAULT_HANDLERS as DEFAULT_METRICS
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.peer import peer_service
from flowscope.observer.server.serve import ObserverServer, check_control_listener
from flowscope.observer.server.state import NodeState
from flowscope.observer.services import ClusterServices
from flowscope.observer.services_check import ProblemLog
from flowscope.observer.subscribers import Subscriber
from flowscope.observer.trace.filter import RegistryPods
from flowscope.observer.trace.hops import HopContext
from flowscope.observer.trace.service import tracer_service
from flowscope.observer.trace.sessions import SessionManager
from flowscope.observer.wallclock import WallClock

if TYPE_CHECKING:
    from flowscope.api.observer import observer_pb2
    from flowscope.observer.exporter.core import ExportSubscriber
    from flowscope.observer.exporter.flowlogs import AgentFlowLogs
    from flowscope.observer.metrics.node import NodeMetrics

log = logging.getLogger(__name__)

RECONCILE_S = 0.5


@dataclass
class AgentConfig:
    node_name: str
    cluster_file: Path | None = None
    device: str | None = None
    tunnel_device: str | None = None  # the overlay's tunnel device (traced as to/from-overlay), if the node has one
    socket_path: Path | None = DEFAULT_SOCKET
    listen_address: str | None = ":4244"  # read-only services only (observer/server/serve.py)
    control_listen_address: str | None = None  # the write services on TCP too; needs mutual TLS
    ring_capacity: int = 65535
    caplen: int = DEFAULT_CAPLEN
    ring_buffer_pages: int = 1024  # 4 MiB of kernel buffer
    # ports whose DNS/HTTP/TLS payload the datapath captures for L7 flows (common/l7_ports.py); () turns it off
    l7_ports: tuple[L7Port, ...] = field(default_factory=lambda: parse_l7_ports(DEFAULT_L7_PORTS))
    l7_redaction: Redaction = field(default_factory=Redaction)  # what of HTTP messages L7 flows keep: redacted
    l7_store_size: int = L7_STORE_SIZE  # L7 messages kept beside the flow ring (observer/l7/store.py)
    tls: ServerTLS | None = None
    kernel_reasons: dict[int, str] = field(default_factory=dict)  # empty: the running kernel's, from BTF
    kernel_drops: bool = True  # report the kernel's own drops (skb:kfree_skb)
    kernel_drop_rate: int = 1000  # kernel drop reports per second, per reason and CPU; 0: no limit
    report_unspecified_drops: bool = False  # also NOT_SPECIFIED drops (every plain kfree_skb): noisy
    aggregation: AggregationSettings = field(default_factory=AggregationSettings)  # medium, 5s, syn,fin,rst
    policy_file: Path | None = None  # a network policy to enforce from the start
    stall_s: float = STALL_S  # a client that reads nothing this long has its flow stream ended (common/streams.py)
    # compiled programs kept for the next start (observer/datapath/compile_cache.py); None: compile every time
    compile_cache: Path | None = COMPILE_CACHE_FOLDER
    metrics_address: str | None = None  # serve Prometheus metrics here (observer/metrics); None: no metrics
    metrics: str | None = None  # the handlers, in Hubble's --metrics syntax; None: DEFAULT_METRICS
    metrics_bpf_stats: bool = False  # hold kernel BPF statistics on, for the programs' run counts and times
    export: ExportSettings = field(default_factory=ExportSettings)  # flow logs (observer/exporter); none by default
    export_clickhouse: str | None = None  # store every flow in ClickHouse here (observer/history); None: no history
    history: WriterOptions = field(default_factory=WriterOptions)  # how (cluster table, retention)

    def check(self) -> None:
        check_capacity(self.ring_capacity)
        check_caplen(self.caplen)
        check_control_listener(self.control_listen_address, self.tls)
        if self.l7_store_size < 1:
            raise ValueError(f"--l7-store-size must be at least 1, not {self.l7_store_size}")
        if self.cluster_file is not None and not self.cluster_file.exists():
            raise ValueError(f"cluster file {self.cluster_file} does not exist")
        if self.metrics is not None and self.metrics_address is None:
            raise ValueError("--metrics needs --metrics-address (where to serve them, e.g. :9965)")
        if self.export_clickhouse is not None:
            check_clickhouse_url(self.export_clickhouse)
        if self.metrics_address is not None:
            from flowscope.observer.metrics.registry import check_metrics
            from flowscope.observer.metrics.server import split_address

            split_address(self.metrics_address)
            check_metrics(self.metrics or DEFAULT_METRICS)


class NodeLock:
    """One agent per network namespace: a second one would fight the first over the same tc hooks.

    An flock dies with its process, so after a kill -9 the next agent gets the lock and knows that anything
    of ours still attached in this namespace is a leftover it may reclaim.
    """

    def __init__(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.path = agent_lock_file(pins.netns_inode())
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            owner = self.path.read_text().strip() or "?"
            raise RuntimeError(f"another flowscope agent (pid {owner}) runs in this network namespace") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        self._sweep()

    @staticmethod
    def _sweep() -> None:
        """Lock files of network namespaces that are gone (their agent was killed, then its lab removed)."""
        live = pins.live_netns_inodes()
        for inode, path in agent_lock_files().items():
            if inode not in live:
                path.unlink(missing_ok=True)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self._fd)


class Agent(Closing):
    def __init__(self, config: AgentConfig) -> None:
        config.check()
        self.config = config
        self._stopped = threading.Event()
        self._lock = NodeLock()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        cfg = self.config
        leftovers = reclaim()
        if leftovers:
            log.info("reclaimed %d tcx links (and their pins) left by an earlier agent", leftovers)
        datapath_source = self._precompile()
        self.metadata = MetadataWatcher(cfg.cluster_file)
        self.metadata.start()
        self.registry = EndpointRegistry(cfg.node_name)
        self.metadata.subscribe("endpoint registry", self.registry.update)
        dtype = event_dtype(cfg.caplen)
        self.ring = FlowRing(cfg.ring_capacity, dtype)
        self.kdrop = self._load_kernel_drops()
        reasons = cfg.kernel_reasons or (self.kdrop.reasons.names if self.kdrop else {})
        decoder = FlowDecoder(cfg.node_name, self.registry, secrets.token_bytes(8), reasons, KernelSymbols())
        self.name_cache = NameCache(NameSets(), frontend_ip=self._frontend_ip)  # filled by the L7 source
        decoder.name_sets = self.name_cache.sets
        self.l7_store, self.l7_counts = L7Store(cfg.l7_store_size), L7Counts()
        decoder.l7, decoder.l7_counts = self.l7_store, self.l7_counts
        self.state = NodeState(
            node_name=cfg.node_name,
            cluster_name=Cluster().name,  # until the metadata says (_follow_own_node)
            address="",
            ring=self.ring,
            decoder=decoder,
            registry=self.registry,
            tls_enabled=cfg.tls is not None,
            exporters=self._exporter_statuses,
        )
        self.datapath: Datapath | None = Datapath(
            self._datapath_config(), pin_dir=pins.pin_dir(), cache=self._compile_cache(), source=datapath_source
        )
        self.datapath.set_l7_ports(cfg.l7_ports)
        # both programs are loaded: the compiler is done for this process. Also when both came from the compile
        # cache: loading libbcc alone makes ~45 MiB of LLVM's and clang's pages resident
        self._release_compiler_memory()
        self.metadata.subscribe("ipcache", ClusterIpcache(self.datapath, cfg.node_name).update)
        services = ClusterServices(self.datapath.lb, cfg.node_name, lambda: self.registry.snapshot.services.ids)
        self.metadata.subscribe("services", services.update)
        self.sessions: SessionManager | None = self._trace_sessions(self.datapath, decoder, reasons)
        followers = [f for f in (self.kdrop, self.sessions.tracer) if f is not None]
        self.attachments = Attachments(
            self.datapath, self.registry, cfg.device, followers, tunnel_device=cfg.tunnel_device
        )
        self.attachments.reconcile()  # the node's device, even without metadata
        if cfg.device and not _interface_exists(cfg.device):
            log.warning("device %s does not exist: flows from and to the network start when it appears", cfg.device)
        self.metadata.subscribe("attachments", self.attachments.update)
        self.metadata.subscribe("node state", self._follow_own_node)
        self.metadata.subscribe("service problems", ProblemLog().update)
        events = self.state.agent_events
        self.metadata.subscribe("agent events", ClusterEvents(events, cfg.node_name).update)
        self.control: Control | None = Control(
            self.datapath, self.registry, cfg.aggregation, cfg.policy_file, on_policy_change=events.policy_changed
        )
        decoder.rules = self.control.policy.rules
        self.metrics = self._metrics(reasons)
        self.flow_logs = self._flow_logs(decoder)
        self.history = self._history(decoder)
        self.ingest = self._make_ingest(self.datapath, self.kdrop, dtype)
        self.ingest.start()
        tls_enabled, stopping = cfg.tls is not None, self.state.stopping
        peers = peer_service(self.metadata, tls_enabled=tls_enabled, stopping=stopping)
        self.server: ObserverServer | None = ObserverServer(
            self.state,
            cfg.socket_path,
            cfg.listen_address,
            cfg.tls,
            [self.control.service(), peers, tracer_service(self.sessions, cfg.node_name, RegistryPods(self.registry))],
            control_address=cfg.control_listen_address,
            stall_s=cfg.stall_s,
        )
        self.server.start()
        self.control.start()
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)
        self._reconciler.start()
        events.started()
        log.info(
            "agent for node %s ready: %s",
            cfg.node_name,
            ", ".join(a for a in (str(cfg.socket_path or ""), cfg.listen_address, cfg.control_listen_address) if a),
        )

    def _follow_own_node(self, cluster: Cluster) -> None:
        """What the metadata says of this node now: its cluster's name and the address its observer serves on,
        which the Observer API reports (GetNodes, the cluster of GetFlows and GetNamespaces)."""
        node = cluster.node(self.config.node_name)
        self.state.cluster_name = cluster.name
        self.state.address = node.address if node else ""

    def _trace_sessions(self, datapath: Datapath, decoder: FlowDecoder, reasons: Mapping[int, str]) -> SessionManager:
        """Packet-path sessions (observer/trace/): hops decoded as flows are, named with the same registry, rules
        and kernel reasons."""
        clock = WallClock()
        context = HopContext(
            decoder=decoder,
            registry=self.registry,
            wall_offset_ns=lambda: clock.offset_ns,
            kernel_reasons=reasons,
            locate=KernelSymbols(),
            rule_name=lambda number: decoder.rules.name(number) if decoder.rules else None,
        )
        return SessionManager(PathTracer(datapath), context)

    @staticmethod
    def _release_compiler_memory() -> None:
        """What compiling took (compiler_memory.py): some 100 MiB the long-running agent has no use for."""
        dropped = release_compiler_memory()
        log.info(
            "compiled and loaded: %d MiB of the compiler's code pages dropped, its freed heap handed back",
            dropped >> 20,
        )

    def _compile_cache(self) -> CompileCache | None:
        folder = self.config.compile_cache
        return CompileCache(folder) if folder is not None else None

    def _datapath_config(self) -> DatapathConfig:
        return DatapathConfig(caplen=self.config.caplen, ring_buffer_pages=self.config.ring_buffer_pages)

    def _kernel_drop_config(self) -> KernelDropConfig:
        cfg = self.config
        return KernelDropConfig(
            caplen=cfg.caplen, reports_per_second=cfg.kernel_drop_rate, report_unspecified=cfg.report_unspecified_drops
        )

    def _precompile(self) -> DatapathSource:
        """Start compiling both programs, side by side in child processes, unless the compile cache has them
        (cached_object.precompile): they are loaded from it once the agent has set up the rest. What the
        datapath is compiled from; the conntrack seed is decided here."""
        cache = self._compile_cache()
        source = DatapathSource.prepare(self._datapath_config(), pin_dir=pins.pin_dir())
        precompile(source.compilation, cache)
        if self.config.kernel_drops:
            try:
                precompile(kdrop.compilation(self._kernel_drop_config(), running_kernel()), cache)
            except Exception as exc:  # loading it says what is wrong, and the agent goes on without it
                log.debug("kernel drop program: not compiled ahead (%s)", exc)
        return source

    def _load_kernel_drops(self) -> KernelDrops | None:
        """The kfree_skb program, or None: without it the agent still observes, minus the kernel's drops."""
        if not self.config.kernel_drops:
            return None
        try:
            return KernelDrops(self._kernel_drop_config(), running_kernel(), cache=self._compile_cache())
        except Exception:
            log.exception("cannot load the kernel drop program; kernel drops will not be reported")
            return None

    def _make_ingest(self, datapath: Datapath, kdrop: KernelDrops | None, dtype: np.dtype) -> Ingest:
        """One ingest thread for every ring buffer: the datapath's events, its L7 records (when ports are
        configured) and the kernel drop program's. Their full-buffer losses all count as the kernel's."""
        debug = DebugEvents(self.state.debug_events)
        sources: list[BatchSource] = [datapath.reader()]
        lost_counts = [datapath.lost_counts]
        if self.config.l7_ports:
            sources.append(self._l7_source(datapath, dtype))
            lost_counts.append(datapath.l7_lost_counts)
        if kdrop is not None:
            # its records marked with their direction where conntrack knows their connection (reply_marks.py)
            sources.append(ReplyMarks(kdrop.reader(), datapath.conntrack, datapath.lb.frontends))
            lost_counts.append(kdrop.lost_counts)

        def kernel_lost() -> list[int]:
            return [sum(per_cpu) for per_cpu in zip(*(counts() for counts in lost_counts), strict=True)]

        rate_limited = kdrop.rate_limited_counts if kdrop is not None else None
        annotate = self.name_cache.annotate
        subscribers: list[Subscriber] = [self.metrics.subscriber] if self.metrics is not None else []
        if self.flow_logs is not None:
            subscribers.append(self.flow_logs.flow_logs)  # after the ring's write: exported flows get its uuids
        if self.history is not None:
            subscribers.append(self.history)  # likewise
        return Ingest(
            sources,
            self.ring,
            self.state.counts,
            kernel_lost,
            dtype,
            rate_limited,
            subscribers=subscribers,
            debug=debug,
            annotate=annotate,
        )

    def _metrics(self, kernel_reasons: Mapping[int, str]) -> NodeMetrics | None:
        """Prometheus metrics (observer/metrics), when an address is given: counted on the ingest thread."""
        cfg = self.config
        if cfg.metrics_address is None:
            return None
        from flowscope.observer.metrics.agent_metrics import AgentParts
        from flowscope.observer.metrics.batch import Sources
        from flowscope.observer.metrics.node import NodeMetrics

        sources = Sources(lambda: self.registry.snapshot, self.name_cache.sets, self.l7_store, kernel_reasons)
        parts = AgentParts(
            self.state.counts,
            self.ring,
            l7_store=self.l7_store,
            open_streams=self._open_streams,
            exporters=self._exporter_statuses,
        )
        handlers = cfg.metrics or DEFAULT_METRICS
        return NodeMetrics(cfg.metrics_address, handlers, sources, parts, bpf_stats=cfg.metrics_bpf_stats)

    def _flow_logs(self, decoder: FlowDecoder) -> AgentFlowLogs | None:
        """The flow-log exporters (observer/exporter), when asked for: behind the ingest thread, never on it."""
        if not self.config.export.enabled:
            return None
        from flowscope.observer.exporter.flowlogs import AgentFlowLogs

        return AgentFlowLogs(self.config.export, decoder, lambda: self.ring.written, self.state.counts.lost)

    def _history(self, decoder: FlowDecoder) -> ExportSubscriber | None:
        """Every flow to ClickHouse (observer/history), when asked for: behind the ingest thread, never on it."""
        if self.config.export_clickhouse is None:
            return None
        from flowscope.observer.history.export import history_subscriber

        url, options = self.config.export_clickhouse, self.config.history
        return history_subscriber(url, options, decoder, lambda: self.ring.written, self.state.counts.lost)

    def _exporter_statuses(self) -> list[observer_pb2.ExporterStatus]:
        """Every exporter's status now, flow logs then history: what ServerStatus and the metrics report."""
        flow_logs, history = getattr(self, "flow_logs", None), getattr(self, "history", None)
        statuses = flow_logs.flow_logs.statuses() if flow_logs is not None else []
        return statuses + ([history.status()] if history is not None else [])

    def _open_streams(self) -> int:
        server = getattr(self, "server", None)
        return server.streams.open if server is not None else 0

    def _l7_source(self, datapath: Datapath, dtype: np.dtype) -> L7Source:
        """The L7 ring's reader, parsing into the L7 store and teaching the name cache (observer/l7/source.py)."""
        cfg = self.config
        return L7Source(
            datapath.l7_reader(),
            cfg.l7_ports,
            self.l7_store,
            names=self.name_cache,
            redaction=cfg.l7_redaction,
            counts=self.l7_counts,
            dtype=dtype,
        )

    def _frontend_ip(self, number: int) -> str | None:
        """The ClusterIP (or other frontend) a translated record's client asked for: the address its names are for."""
        frontend = self.registry.snapshot.services.by_id.get(number)
        return frontend.original.ip if frontend is not None else None

    def _reconcile_loop(self) -> None:
        """Interfaces come and go without the metadata changing (a pod restarted): look for them often."""
        while not self._stopped.wait(RECONCILE_S):
            try:
                self.attachments.reconcile()
            except Exception:  # keep serving what is attached; say what went wrong
                log.exception("reconciling attachments failed")

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM (or close() from another thread)."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            self._stopped.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        while not self._stopped.wait(1.0):
            pass

    def close(self) -> None:
        """Stop serving, detach everything, unload, release the lock. Safe to call twice."""
        self._stopped.set()
        metadata = getattr(self, "metadata", None)
        if metadata is not None:
            metadata.stop()  # before anything it hands metadata to is closed
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
            self.server = None
        ingest = getattr(self, "ingest", None)
        if ingest is not None:
            ingest.stop()
            ingest.join(timeout=2)
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.close()
            self.metrics = None
        flow_logs = getattr(self, "flow_logs", None)
        if flow_logs is not None:
            flow_logs.close()  # after ingest: what it handed over is written
            self.flow_logs = None
        history = getattr(self, "history", None)
        if history is not None:
            history.close()
            self.history = None
        sessions = getattr(self, "sessions", None)
        if sessions is not None:
            sessions.close()
            self.sessions = None
        control = getattr(self, "control", None)
        if control is not None:
            control.close()
            self.control = None
        attachments = getattr(self, "attachments", None)
        if attachments is not None:
            attachments.close()
        datapath = getattr(self, "datapath", None)
        if datapath is not None:
            datapath.close()
            self.datapath = None
        kdrop = getattr(self, "kdrop", None)
        if kdrop is not None:
            kdrop.close()
            self.kdrop = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None  # type: ignore[assignment]


def _interface_exists(name: str) -> bool:
    """Whether this network namespace has the interface now (the attachments keep trying until it does)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
