"""The datapath as the agent holds it: compiled, loaded, its stages wired, attached where asked.

One `Datapath` is one compilation of bpf/datapath.c with bcc: every program (entry programs and stages) and
every map comes from it, so they share the maps. Use it as a context manager: leaving it detaches every program
it attached and closes every fd, which frees the programs and maps once nothing else holds them.

A crash (kill -9) skips that. Given a pin folder, the tcx links and the `calls` array are pinned there, so
the entry programs stay attached and keep passing packets (observer/datapath/pins.py) until the next start calls
reclaim(), which removes the links' pins and then the rest. The conntrack tables are pinned there as well, and
stay: every next Datapath continues them (ct_pins.py) until uninstall() removes the folder.
"""

from __future__ import annotations

import ctypes
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bcc import BPF

from flowscope.common.closing import Closing
from flowscope.common.l7_ports import L7Port
from flowscope.observer.datapath import ct_pins, pathtrace, pins, tick_clock
from flowscope.observer.datapath.bpfsys import map_info, obj_pin
from flowscope.observer.datapath.c_source import BPF_DIR, DatapathConfig, cflags, tail_call_slots, translation_unit
from flowscope.observer.datapath.cached_object import Compilation, compile_or_load
from flowscope.observer.datapath.compile_cache import CompileCache
from flowscope.observer.datapath.conntrack import ConntrackTable
from flowscope.observer.datapath.lbmaps import LbMaps
from flowscope.observer.datapath.maps import DatapathMaps, IpcacheEntries, IpcacheValue, RuntimeConfig
from flowscope.observer.datapath.policymaps import PolicyMaps
from flowscope.observer.datapath.ringbuf import RingReader
from flowscope.observer.datapath.tc import DEVICE_HOOKS, ENDPOINT_HOOKS, Hook, TcAttachments, TcLink, reclaim_links
from flowscope.observer.datapath.tick_clock import JiffiesClock

# Programs the agent runs itself with BPF_PROG_TEST_RUN, never attached: the conntrack sweep, policy questions,
# the clock's conversion.
TOOL_PROGRAMS = ("ct_flush", "policy_query", "clock_sample")


def reclaim() -> int:
    """Remove what a killed agent left in this network namespace; how many programs it took off their hooks.

    Links first, the rest second: unpinning the tail-call array while its entry programs still run would drop
    packets. Pin folders of namespaces that no longer exist go too.
    """
    removed = reclaim_links(pins.pin_dir())
    pins.release(pins.pin_dir())
    pins.sweep_stale()
    return removed


def uninstall() -> tuple[int, bool]:
    """Remove everything of ours in this network namespace, the conntrack tables too: (how many programs it took
    off their hooks, whether there was a pin folder). Only with no agent running here (the caller holds its lock)."""
    removed = reclaim_links(pins.pin_dir())
    had_pins = pins.remove(pins.pin_dir())
    pins.sweep_stale()
    return removed, had_pins


@dataclass(frozen=True)
class DatapathSource:
    """What the datapath is compiled from: bpf/datapath.c and its -D flags, which depend on the conntrack tables
    pinned in the namespace (their seed) and on the kernel (the packet-path offsets from BTF)."""

    compilation: Compilation
    ct_seed: int  # where connections live in the conntrack tables (cttable.h)
    ct_continued: bool  # whether the conntrack tables are an earlier agent's
    kernel_hops: bool  # whether the packet-path tracepoints are compiled in

    @classmethod
    def prepare(
        cls, config: DatapathConfig | None = None, bpf_dir: Path = BPF_DIR, pin_dir: Path | None = None
    ) -> DatapathSource:
        """Decide the seed: random for new tables, so that no one can pick keys that crowd one place (cttable.h);
        pinned tables an earlier agent left keep theirs (ct_pins.py), and tables that do not fit are removed."""
        seed, kept = secrets.randbits(32), None
        ct_flags: list[str] = []
        ct_tables: dict[str, Path] = {}
        if pin_dir is not None:
            pins.ensure_bpffs()
            ct_folder = ct_pins.folder(pin_dir)
            ct_folder.mkdir(parents=True, exist_ok=True)  # bcc pins into a folder that exists
            kept = ct_pins.kept_seed(ct_folder, ct_pins.Layout.compiled(bpf_dir))
            seed = seed if kept is None else kept
            ct_flags = [f'-DFS_CT_PIN_DIR="{ct_folder}"']
            ct_tables = {name: ct_folder / name for name in ct_pins.TABLES}
        # the packet-path tracepoints (bpf/pathtrace.c) read sk_buffs at offsets from BTF: without them, sessions
        # follow packets through the tc hooks only
        kernel_flags = pathtrace.kernel_flags()
        flags = (*cflags(config or DatapathConfig(), bpf_dir), f"-DFS_CT_SEED={seed}U", *ct_flags, *kernel_flags)
        compilation = Compilation(translation_unit(bpf_dir), flags, pins=ct_tables)
        return cls(compilation, seed, kept is not None, bool(kernel_flags))


class Datapath(Closing):
    """The loaded programs and maps of one compilation, and where they are attached.

    What the agent does on every reconcile (endpoints, ipcache, lost counters) is here; `maps` has the rest.
    """

    def __init__(
        self,
        config: DatapathConfig | None = None,
        bpf_dir: Path = BPF_DIR,
        pin_dir: Path | None = None,
        cache: CompileCache | None = None,
        source: DatapathSource | None = None,
    ) -> None:
        """`cache`: where compilations are kept (compile_cache.py); a start that finds this one there loads the
        programs without compiling. None: compile with bcc every time, here. `source`: what
        DatapathSource.prepare() gave for this config and pin folder (the agent prepares it early, to have it
        compiled while it sets up the rest)."""
        self.config = config or DatapathConfig()
        self._pin_dir = pin_dir
        source = source or DatapathSource.prepare(self.config, bpf_dir, pin_dir)
        self.ct_seed, self.ct_continued, self.kernel_hops = source.ct_seed, source.ct_continued, source.kernel_hops
        self._bpf = compile_or_load(source.compilation, cache)
        try:
            self._slots = tail_call_slots(bpf_dir)
            names = [hook.program for hook in Hook] + list(self._slots.values()) + list(TOOL_PROGRAMS)
            self._programs = {name: self._bpf.load_func(name.encode(), BPF.SCHED_CLS) for name in names}
            self.fill_tail_calls()
            if pin_dir is not None:
                ct_pins.record(self._bpf, ct_pins.Layout.compiled(bpf_dir), self.ct_seed)
                obj_pin(self._bpf[b"calls"].map_fd, str(pin_dir / "calls"))
        except BaseException:
            if pin_dir is not None:
                pins.release(pin_dir)
            self._bpf.cleanup()
            raise
        self.maps = DatapathMaps(self._bpf)
        self.calibrate_clock()
        self.conntrack = ConntrackTable(self._bpf, self.program_fd("ct_flush"), self.ct_seed)
        if self.ct_continued:
            self.conntrack.forget_verdicts()
        self.policy = PolicyMaps(self._bpf, self.program_fd("policy_query"))
        self.lb = LbMaps(self._bpf, self.maps.update_config)  # services: frontends and their backends
        self._ipcache_lock = threading.Lock()  # the reconcile thread and the policy's both replace it
        self._cluster_ipcache: dict[Any, IpcacheValue] = {}
        self._policy_ipcache: dict[Any, IpcacheValue] = {}
        self._tc = TcAttachments(pin_dir)
        self._reader: RingReader | None = None
        self._l7_reader: RingReader | None = None
        self._l7_ports: set[int] = set()  # the `l7_ports` slots we wrote, to clear when the set changes
        self._closed = False

    @property
    def bpf(self) -> Any:
        """The bcc object (or the compile cache's stand-in, cached_object.py): its maps and programs by name, for
        the packet-path tracer (pathtrace.py)."""
        return self._bpf

    # programs and the tail-call array

    def program_fd(self, name: str) -> int:
        """The fd of a loaded program, by its C function name (`from_container`, `stage_ipv4`, ...)."""
        return int(self._programs[name].fd)

    @property
    def tail_call_slots(self) -> dict[int, str]:
        """Slot of `calls` -> the stage program in it."""
        return dict(self._slots)

    def fill_tail_calls(self) -> None:
        calls = self._bpf[b"calls"]
        for slot, name in self._slots.items():
            calls[ctypes.c_int(slot)] = ctypes.c_int(self._programs[name].fd)

    def clear_tail_call(self, slot: int) -> None:
        """Empty one slot of `calls` (tests use it to see a missed tail call reported)."""
        del self._bpf[b"calls"][ctypes.c_int(slot)]

    def calibrate_clock(self) -> JiffiesClock:
        """Measure the tick and the offset the datapath's cheap clock needs (tick_clock.py), and hand them over."""
        self.clock = tick_clock.measure(self.program_fd("clock_sample"))
        self.maps.update_config(jiffy_ns=self.clock.jiffy_ns, jiffies_offset_ns=self.clock.offset_ns)
        return self.clock

    # attaching, in the network namespace of the thread that first attaches

    def attach(self, interface: str | int, hooks: Iterable[Hook | str]) -> None:
        """Attach the entry programs of `hooks` (Hook or "from-container", ...) to a device.

        Raises OSError when the device does not exist (or vanished meanwhile).
        """
        for hook in map(Hook.named, hooks):
            self._tc.attach(interface, hook, self.program_fd(hook.program))

    def attach_endpoint(self, interface: str | int, ep_id: int, identity: int) -> int:
        """Observe an endpoint on its host-side veth (who it is, then from/to-container); its ifindex."""
        ifindex = self._tc.ifindex(interface)
        self.set_endpoint(ifindex, ep_id, identity)  # first, so its first packets already carry its id
        self.attach(interface, ENDPOINT_HOOKS)
        return ifindex

    def attach_device(self, interface: str | int) -> int:
        """Observe the node's network device (endpoint id 0): attach from/to-netdev; its ifindex."""
        self.attach(interface, DEVICE_HOOKS)
        return self._tc.ifindex(interface)

    def detach(self, interface: str | int) -> None:
        """Take our programs off a device; a device that is gone already is not an error."""
        self._tc.detach(interface)

    def attached(self) -> list[TcLink]:
        return self._tc.attached()

    # the maps the agent keeps up to date

    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None:
        self.maps.set_endpoint(ifindex, ep_id, identity)

    def remove_endpoint(self, ifindex: int) -> None:
        self.maps.remove_endpoint(ifindex)

    def replace_ipcache(self, entries: IpcacheEntries) -> None:
        """Make the ipcache the cluster's `entries`, under the policy's own CIDR prefixes (which a cluster
        entry of the same prefix overrides)."""
        with self._ipcache_lock:
            self._cluster_ipcache = dict(entries)
            self.maps.replace_ipcache({**self._policy_ipcache, **self._cluster_ipcache})

    def replace_policy_ipcache(self, entries: IpcacheEntries) -> None:
        """The prefixes a policy gave identities of their own (CIDR peers), kept beside the cluster's."""
        with self._ipcache_lock:
            self._policy_ipcache = dict(entries)
            self.maps.replace_ipcache({**self._policy_ipcache, **self._cluster_ipcache})

    def lost_counts(self) -> list[int]:
        return self.maps.lost_counts()

    def l7_lost_counts(self) -> list[int]:
        """Per CPU, how many L7 records could not be reserved in `l7_events` since the datapath was loaded."""
        table = self._bpf[b"l7_lost"]
        return [int(n) for n in table[table.Key(0)]]

    def set_l7_ports(self, ports: Sequence[L7Port]) -> None:
        """Capture L7 on exactly these ports (common/l7_ports.py); none turns the capture off.

        The slots are written before the capture is switched on and cleared after it is switched off, so a
        packet never sees a half-written set as the only one (a port changed in place may be missed once).
        """
        table = self._bpf[b"l7_ports"]
        slots: dict[int, Any] = {}
        for port in ports:
            leaf = slots.setdefault(port.port, table.Leaf())
            if port.protocol == "tcp":
                leaf.tcp, leaf.tcp_caplen = port.kind_number, port.caplen
            else:
                leaf.udp, leaf.udp_caplen = port.kind_number, port.caplen
        if not slots:
            self.update_config(l7_active=0)
        for number, leaf in slots.items():
            table[table.Key(number)] = leaf
        for number in self._l7_ports - slots.keys():
            table[table.Key(number)] = table.Leaf()  # all zero: no kind
        self._l7_ports = set(slots)
        if slots:
            self.update_config(l7_active=1)

    def update_config(self, **changes: int) -> RuntimeConfig:
        """Change some runtime knobs (aggregation, policy revision, ...), keeping the others."""
        return self.maps.update_config(**changes)

    # events

    def reader(self) -> RingReader:
        """The one consumer of the `events` ring buffer (made on first use)."""
        if self._reader is None:
            fd = self._bpf[b"events"].map_fd
            self._reader = RingReader(fd, map_info(fd).max_entries, self.config.caplen)
        return self._reader

    def l7_reader(self) -> RingReader:
        """The one consumer of the `l7_events` ring buffer (made on first use): struct fs_l7_event records, read
        as events of FS_L7_CAPLEN bytes (the same header)."""
        if self._l7_reader is None:
            fd = self._bpf[b"l7_events"].map_fd
            self._l7_reader = RingReader(fd, map_info(fd).max_entries, self.config.l7_caplen)
        return self._l7_reader

    # lifetime

    def close(self) -> None:
        """Detach everything we attached and close every fd; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._tc.close()
            if self._pin_dir is not None:
                pins.release(self._pin_dir)
        finally:
            for reader in (self._reader, self._l7_reader):
                if reader is not None:
                    reader.close()
            self.conntrack.close()
            self._bpf.cleanup()
