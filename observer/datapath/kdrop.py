"""The kernel drop program (bpf/kdrop.c) as the agent holds it: compiled for this kernel, attached, read.

    with KernelDrops(KernelDropConfig(caplen=128)) as kdrop:
        kdrop.follow_endpoints({1001: "fs-lab-client"})  # endpoint id -> its netns; plus this namespace, as 0
        batch = kdrop.reader().read_batch(0.1)  # struct fs_event records, like the tc datapath's
        names = kdrop.reasons.names  # {3: "NO_SOCKET", ...} for the decoder

Compiling: offsets and drop-reason values come from the running kernel's BTF (kdrop_layout.py) and go in as
defines. bcc attaches the TRACEPOINT_PROBE while loading it (a perf event whose file descriptor this process
holds), so the program sees drops from then on, but reports none until follow_endpoints() (or
set_namespaces()) names this node's namespaces. The namespace the KernelDrops is made in is the node's.

Lifetime: nothing is pinned and nothing attached outside this process. When the process ends, however it ends
(kill -9 included), the kernel closes the perf event, which detaches the program and frees it and its maps, so
there is nothing to reclaim at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bcc import BPF

from flowscope.common.capture import DEFAULT_CAPLEN, check_caplen
from flowscope.common.closing import Closing
from flowscope.observer.datapath.bpfsys import map_info
from flowscope.observer.datapath.btf import Btf, running_kernel
from flowscope.observer.datapath.c_source import BPF_DIR, translation_unit
from flowscope.observer.datapath.cached_object import Compilation, compile_or_load
from flowscope.observer.datapath.compile_cache import CompileCache
from flowscope.observer.datapath.kdrop_layout import DropReasons, KernelLayout
from flowscope.observer.datapath.netns_maps import (
    node_namespaces,
    own_netns_inode,
    write_namespaces,
)
from flowscope.observer.datapath.ringbuf import RingReader

log = logging.getLogger(__name__)

MAIN_SOURCE = "kdrop.c"
TRACEFS = Path("/sys/kernel/tracing")
_NS_PER_S = 1_000_000_000
_F_UNSPECIFIED = 0x1  # FS_KDROP_F_UNSPECIFIED


@dataclass(frozen=True)
class KernelDropConfig:
    caplen: int = DEFAULT_CAPLEN  # FS_CAPLEN: must match the agent's records (and the tc datapath's)
    ring_buffer_pages: int = 128  # the program's own ring buffer (512 KiB)
    reports_per_second: int = 1000  # per reason and CPU, after a burst of as many; 0: no limit
    report_unspecified: bool = False  # also report NOT_SPECIFIED (every plain kfree_skb): noisy

    def __post_init__(self) -> None:
        check_caplen(self.caplen)
        if self.ring_buffer_pages <= 0 or self.ring_buffer_pages & (self.ring_buffer_pages - 1):
            raise ValueError(f"ring_buffer_pages must be a power of two, not {self.ring_buffer_pages}")
        if self.reports_per_second < 0:
            raise ValueError("reports_per_second cannot be negative")


def ensure_tracefs() -> None:
    """Mount tracefs where bcc looks for the tracepoint's format (it is not mounted at boot on this machine)."""
    if (TRACEFS / "events").is_dir():
        return
    subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACEFS)], check=True, capture_output=True)


def compilation(config: KernelDropConfig, btf: Btf, bpf_dir: Path = BPF_DIR) -> Compilation:
    """bpf/kdrop.c with the running kernel's offsets and drop reasons (from BTF) and the config as defines."""
    defines = {
        **KernelLayout.of(btf).defines(),
        **DropReasons.of(btf).defines(),
        "FS_CAPLEN": config.caplen,
        "FS_KDROP_RINGBUF_PAGES": config.ring_buffer_pages,
    }
    ensure_tracefs()
    cflags = (f"-I{bpf_dir / 'include'}", *(f"-D{name}={value}U" for name, value in defines.items()))
    # bcc writes the probe's argument struct from the tracepoint's format: the cache's key must see it
    tracepoint_format = (TRACEFS / "events" / "skb" / "kfree_skb" / "format").read_bytes()
    return Compilation(translation_unit(bpf_dir, MAIN_SOURCE), cflags, extra_key=tracepoint_format)


class KernelDrops(Closing):
    """The loaded kfree_skb program, its ring buffer and counters, and the namespaces it reports for."""

    def __init__(
        self,
        config: KernelDropConfig | None = None,
        btf: Btf | None = None,
        bpf_dir: Path = BPF_DIR,
        cache: CompileCache | None = None,
    ) -> None:
        """`cache`: where compilations are kept (compile_cache.py); None: compile with bcc every time."""
        self.config = config or KernelDropConfig()
        btf = btf or running_kernel()
        self.layout = KernelLayout.of(btf)
        self.reasons = DropReasons.of(btf)
        self._bpf = compile_or_load(compilation(self.config, btf, bpf_dir), cache)
        self._reader: RingReader | None = None
        self._closed = False
        self.node_netns = own_netns_inode()
        self._followed: dict[int, int] | None = None
        try:
            self.configure(self.config.reports_per_second, self.config.report_unspecified)
        except BaseException:
            self._bpf.cleanup()
            raise
        log.info(
            "kernel drops: skb:kfree_skb attached, %d drop reasons from BTF, at most %s reports/s per reason and CPU",
            len(self.reasons.names),
            self.config.reports_per_second or "unlimited",
        )

    # what the program reports

    def configure(self, reports_per_second: int, report_unspecified: bool = False) -> None:
        """Change the rate limit (per reason and CPU; 0: none) and NOT_SPECIFIED reporting, while it runs."""
        table = self._bpf[b"kdrop_config"]
        value = table.Leaf()
        value.report_cost_ns = _NS_PER_S // reports_per_second if reports_per_second else 0
        value.burst_ns = value.report_cost_ns * reports_per_second
        value.flags = _F_UNSPECIFIED if report_unspecified else 0
        table[table.Key(0)] = value

    def set_namespaces(self, namespaces: Mapping[int, int]) -> None:
        """Make the program report drops in exactly these namespaces: inode -> endpoint id (0: the node)."""
        write_namespaces(self._bpf[b"kdrop_netns"], namespaces)

    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None:
        """Report drops in the node's namespace and in these endpoints' (endpoint id -> netns name or path), looked
        up again on every reconcile (netns_maps.py)."""
        wanted = node_namespaces(self.node_netns, endpoints)
        if wanted != self._followed:
            self.set_namespaces(wanted)
            self._followed = wanted
            log.info(
                "kernel drops: reporting drops in %d network namespaces (the node's and its endpoints')", len(wanted)
            )

    def follow_devices(self, ifindexes: Iterable[int]) -> None:
        """The node's devices our tc programs are attached to: their TC_INGRESS/TC_EGRESS drops are our own
        datapath's, which reports them itself (with its reason), so this program leaves them out."""
        wanted = set(ifindexes)
        table = self._bpf[b"kdrop_own_devices"]
        current = {key.value for key in table}
        for ifindex in wanted - current:
            table[table.Key(ifindex)] = table.Leaf(1)
        for ifindex in current - wanted:
            with contextlib.suppress(KeyError):
                del table[table.Key(ifindex)]

    def namespaces(self) -> dict[int, int]:
        return {key.value: value.value for key, value in self._bpf[b"kdrop_netns"].items()}

    # what it counted

    def lost_counts(self) -> list[int]:
        """Per CPU, reports that found the ring buffer full (cumulative)."""
        return self._per_cpu(b"kdrop_lost")

    def rate_limited_counts(self) -> list[int]:
        """Per CPU, drops not reported on their own because of the rate limit (cumulative)."""
        return self._per_cpu(b"kdrop_limited")

    def pending(self) -> int:
        """Suppressed drops that no report has carried yet (each bucket hands its count to its next report)."""
        buckets = self._bpf[b"kdrop_buckets"]
        return sum(int(b.suppressed) for _key, per_cpu in buckets.items() for b in per_cpu)

    def _per_cpu(self, name: bytes) -> list[int]:
        table = self._bpf[name]
        return [int(n) for n in table[table.Key(0)]]

    # events

    def reader(self) -> RingReader:
        """The one consumer of the program's ring buffer (made on first use)."""
        if self._reader is None:
            fd = self._bpf[b"kdrop_events"].map_fd
            self._reader = RingReader(fd, map_info(fd).max_entries, self.config.caplen)
        return self._reader

    def program_fd(self) -> int:
        return int(self._bpf.load_func(b"tracepoint__skb__kfree_skb", BPF.TRACEPOINT).fd)

    # lifetime

    def close(self) -> None:
        """Detach the program and free it and its maps; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._reader is not None:
                self._reader.close()
        finally:
            self._bpf.cleanup()
