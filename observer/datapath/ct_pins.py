"""The conntrack tables' pins: connections outlive the agent that tracked them.

An agent that started with empty tables would take the replies of every connection opened before it for
openers (and an enforcing endpoint might deny them). So `ct4`, `ct6`, `ct_used` and `ct_meta` are pinned in the
namespace's pin folder, under conntrack/, and kept when an agent stops or is killed (pins.release); the next
agent's datapath uses them, as bcc uses a map already pinned where a table is declared pinned
(bpf/include/flowscope/maps.h). They go only with the whole folder (pins.remove): `flowscope agent
--uninstall`, `flowscope lab down`, or the sweep of a namespace that is gone.

bcc checks nothing of a pinned map it takes, so the loader does, before compiling: the tables must have this
datapath's shape (sizes, entries, flags) and layout version (FS_CT_LAYOUT, kept in ct_meta), and their seed is
compiled in again, since it is where their keys live (cttable.h). Tables that do not fit are removed, and the
agent starts with empty ones, saying so.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowscope.observer.datapath import pins
from flowscope.observer.datapath.bpfsys import map_info, obj_get
from flowscope.observer.datapath.c_source import BPF_DIR, header_define
from flowscope.observer.datapath.conntrack import SLOT4_DTYPE, SLOT6_DTYPE

log = logging.getLogger(__name__)

TABLES = ("ct4", "ct6", "ct_used", "ct_meta")
META_DTYPE = np.dtype([("layout", "<u4"), ("seed", "<u4")])  # struct fs_ct_meta
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 0x400


@dataclass(frozen=True)
class Layout:
    """What this datapath's tables are made with: another agent's tables are usable only if theirs is the same."""

    version: int  # FS_CT_LAYOUT (cttable.h)
    slots: int  # FS_CT_MAX (config.h): slots of each family's table

    @classmethod
    def compiled(cls, bpf_dir: Path = BPF_DIR) -> Layout:
        return cls(header_define("cttable.h", "FS_CT_LAYOUT", bpf_dir), header_define("config.h", "FS_CT_MAX", bpf_dir))

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Table -> (value size, entries); every key is a 4-byte index."""
        return {
            "ct4": (SLOT4_DTYPE.itemsize, self.slots),
            "ct6": (SLOT6_DTYPE.itemsize, self.slots),
            "ct_used": (8, 2 * self.slots // 64),
            "ct_meta": (META_DTYPE.itemsize, 1),
        }


def folder(pin_dir: Path) -> Path:
    """Where a namespace's conntrack tables are pinned, in its pin folder."""
    return pin_dir / pins.KEPT


def kept_seed(tables: Path, layout: Layout) -> int | None:
    """The seed of the tables pinned in `tables` when this datapath can use them as they are. None when there
    are none, and when they do not fit: then they are removed (and the log says why), for empty ones."""
    if not any((tables / name).exists() for name in TABLES):
        return None
    problem, seed = _check(tables, layout)
    if problem is None:
        log.info("conntrack: continuing the connections of the tables pinned in %s", tables)
        return seed
    log.warning("conntrack: the tables pinned in %s do not fit this agent (%s): starting afresh", tables, problem)
    shutil.rmtree(tables, ignore_errors=True)
    return None


def _check(tables: Path, layout: Layout) -> tuple[str | None, int]:
    """(what does not fit, or None; the seed)."""
    missing = [name for name in TABLES if not (tables / name).exists()]
    seed = 0
    for name, (value_size, entries) in layout.shapes().items():
        if name in missing:
            continue
        try:
            fd = obj_get(str(tables / name))
        except OSError as exc:
            return f"{name}: {exc.strerror}", 0
        try:
            info = map_info(fd)
            found = (info.type, info.key_size, info.value_size, info.max_entries, info.flags & BPF_F_MMAPABLE)
            if found != (BPF_MAP_TYPE_ARRAY, 4, value_size, entries, BPF_F_MMAPABLE):
                shape = f"{info.value_size}-byte values and {info.max_entries} entries"
                return f"{name} has {shape}, not {value_size}-byte values and {entries} entries", 0
            if name == "ct_meta":
                meta = _read_meta(fd)
                if int(meta["layout"]) != layout.version:
                    return f"layout {int(meta['layout'])}, this agent's is {layout.version}", 0
                seed = int(meta["seed"])
        finally:
            os.close(fd)
    if missing:
        return f"{', '.join(missing)} missing", 0
    return None, seed


def _read_meta(fd: int) -> np.void:
    with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
        return np.frombuffer(mapped, META_DTYPE, 1)[0].copy()


def record(bpf: Any, layout: Layout, seed: int) -> None:
    """Write what the tables are made with into ct_meta, once they are in use (a load that fails before leaves
    layout 0, which no agent takes)."""
    meta = bpf[b"ct_meta"]
    meta[meta.Key(0)] = meta.Leaf(layout.version, seed)
