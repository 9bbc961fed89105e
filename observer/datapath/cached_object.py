"""Compiling with bcc, or loading what an earlier compilation left in the compile cache: one call for both.

    bpf = compile_or_load(Compilation(text, tuple(cflags), pins={"ct4": ...}), cache)
    fn = bpf.load_func(b"from_container", BPF.SCHED_CLS)   # .fd
    table = bpf[b"config"]                                  # a bcc Table over the map
    bpf.cleanup()

With no cache it is bcc's BPF, as before. With one, a miss is compiled by bcc in a child process that records
its output in the cache (compile_worker.py), and then loaded as a hit is. A hit is a CachedObject:
the maps created (or opened where pinned), the programs loaded when asked for, with the parts of bcc's interface
the agent uses, so the code that holds it cannot tell. Its tables are bcc's own Table classes over our fds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bcc import BPF
from bcc import table as bcc_table
from bcc.libbcc import lib

from flowscope.observer.datapath.bpfsys import map_create, obj_get, obj_pin, prog_load
from flowscope.observer.datapath.compile_cache import CompileCache, CompiledObject, MapRecord, NotCacheable, relocated
from flowscope.observer.datapath.compile_worker import Compiling

log = logging.getLogger(__name__)

_TABLE_CLASSES: dict[int, type] = {
    bcc_table.BPF_MAP_TYPE_HASH: bcc_table.HashTable,
    bcc_table.BPF_MAP_TYPE_ARRAY: bcc_table.Array,
    bcc_table.BPF_MAP_TYPE_PROG_ARRAY: bcc_table.ProgArray,
    bcc_table.BPF_MAP_TYPE_PERCPU_HASH: bcc_table.PerCpuHash,
    bcc_table.BPF_MAP_TYPE_PERCPU_ARRAY: bcc_table.PerCpuArray,
    bcc_table.BPF_MAP_TYPE_LRU_HASH: bcc_table.LruHash,
    bcc_table.BPF_MAP_TYPE_LRU_PERCPU_HASH: bcc_table.LruPerCpuHash,
    bcc_table.BPF_MAP_TYPE_LPM_TRIE: bcc_table.LpmTrie,
    bcc_table.BPF_MAP_TYPE_RINGBUF: bcc_table.RingBuf,
}

# bcc names a program after its function less these prefixes (its bcc_prog_load_xattr), cut to 15 characters
_NAME_PREFIXES = ("kprobe__", "kretprobe__", "tracepoint__", "raw_tracepoint__", "kfunc__", "kretfunc__", "lsm__")


@dataclass(frozen=True)
class Compilation:
    """One compilation by bcc: the C text and -D flags; the tables the C declares pinned, and where (a warm start
    opens or makes the pins as bcc does); anything else bcc reads while compiling that the text and flags do not
    say (kdrop.c: the tracepoint's format), for the cache's key."""

    text: str
    cflags: tuple[str, ...]
    pins: Mapping[str, Path] = field(default_factory=dict)
    extra_key: bytes = b""

    def key(self, cache: CompileCache) -> str:
        return cache.key(self.text, self.cflags, self.extra_key)


# compilations started in children and not yet waited for, by key (this process's)
_compiling: dict[str, Compiling] = {}


def precompile(compilation: Compilation, cache: CompileCache | None) -> None:
    """Start compiling into the cache in a child process, unless the cache has it (or it is being compiled): the
    compile_or_load() of the same compilation later waits for it. Two started early compile side by side."""
    if cache is None:
        return
    key = compilation.key(cache)
    if key not in _compiling and not cache.path(key).exists():
        _compiling[key] = Compiling.start(cache.folder, key, compilation.text, compilation.cflags, compilation.pins)


def compile_or_load(compilation: Compilation, cache: CompileCache | None) -> Any:
    """The compilation's programs and maps: with no cache, bcc's BPF compiled here, as ever; with one, a
    CachedObject of its entry, compiled first in a child when it has none (compile_worker.py), so that clang and
    LLVM never run in this process. A compilation that cannot be cached is compiled here."""
    if cache is None:
        return _bcc(compilation)
    key = compilation.key(cache)
    compiled = cache.get(key)
    if compiled is not None:
        log.info("compile cache: loading the programs compiled earlier (%s)", cache.path(key).name)
        return CachedObject(compiled, cache, key)
    compiling = _compiling.pop(key, None) or Compiling.start(
        cache.folder, key, compilation.text, compilation.cflags, compilation.pins
    )
    made = compiling.wait()
    compiled = cache.get(key) if made else None
    if compiled is None:  # not cacheable, or the folder could not be written (the child said why)
        return _bcc(compilation)
    log.info("compile cache: compiled and stored (%s)", cache.path(key).name)
    return CachedObject(compiled, cache, key)


def _bcc(compilation: Compilation) -> Any:
    return BPF(text=compilation.text.encode(), cflags=list(compilation.cflags))


class CachedObject:
    """The programs and maps of a cached compilation, loaded in this process, as bcc's BPF would hold them."""

    Function = BPF.Function  # bcc's ProgArray takes one as a value

    def __init__(self, compiled: CompiledObject, cache: CompileCache | None = None, key: str = "") -> None:
        self.compiled = compiled
        self._cache, self._key = cache, key
        self.funcs: dict[bytes, Any] = {}
        self.tables: dict[bytes, Any] = {}
        self._map_fds: dict[str, int] = {}
        self._maps = {m.name: m for m in compiled.maps}
        self._tracepoint_fds: dict[bytes, int] = {}
        self._raw_tracepoint_fds: dict[bytes, int] = {}
        try:
            for record in compiled.maps:
                self._map_fds[record.name] = _open_map(record)
            self._autoload()
        except BaseException:
            self.cleanup()
            raise

    # bcc's interface

    def __getitem__(self, name: bytes) -> Any:
        if name not in self.tables:
            self.tables[name] = self._table(self._maps[name.decode()])
        return self.tables[name]

    def load_func(self, func_name: bytes, prog_type: int) -> Any:
        if func_name in self.funcs:
            return self.funcs[func_name]
        program = self.compiled.program(func_name.decode())
        try:
            insns = relocated(program, self._map_fds)
            fd = prog_load(prog_type, insns, self.compiled.license, _prog_name(program.name))
        except OSError:
            # a cached program the kernel refuses: the next start compiles afresh rather than trying it again
            if self._cache is not None:
                self._cache.discard(self._key)
            raise
        fn = BPF.Function(self, func_name, fd)
        self.funcs[func_name] = fn
        return fn

    def attach_tracepoint(self, tp: bytes, fn_name: bytes) -> None:
        """Load `fn_name` as a tracepoint program and attach it to `tp` (`category:event`)."""
        category, event = tp.split(b":")
        fd = lib.bpf_attach_tracepoint(self.load_func(fn_name, BPF.TRACEPOINT).fd, category, event)
        if fd < 0:
            raise OSError(f"cannot attach {fn_name.decode()} to the tracepoint {tp.decode()}")
        self._tracepoint_fds[tp] = fd

    def attach_raw_tracepoint(self, tp: bytes, fn_name: bytes) -> None:
        if tp in self._raw_tracepoint_fds:
            raise Exception(f"Raw tracepoint {tp.decode()} has been attached")
        fd = lib.bpf_attach_raw_tracepoint(self.load_func(fn_name, BPF.RAW_TRACEPOINT).fd, tp)
        if fd < 0:
            raise Exception("Failed to attach BPF to raw tracepoint")
        self._raw_tracepoint_fds[tp] = fd

    def detach_raw_tracepoint(self, tp: bytes) -> None:
        os.close(self._raw_tracepoint_fds.pop(tp))

    def cleanup(self) -> None:
        """Detach what it attached and close every fd (programs and maps go once nothing else holds them)."""
        for fd in self._tracepoint_fds.values():
            lib.bpf_close_perf_event_fd(fd)
        for fd in self._raw_tracepoint_fds.values():
            os.close(fd)
        for fn in self.funcs.values():
            os.close(fn.fd)
        for fd in self._map_fds.values():
            os.close(fd)
        self._tracepoint_fds, self._raw_tracepoint_fds, self.funcs, self._map_fds = {}, {}, {}, {}
        self.tables = {}

    def _autoload(self) -> None:
        """What bcc does on compiling: attach every TRACEPOINT_PROBE (a function tracepoint__<category>__<event>)
        and RAW_TRACEPOINT_PROBE. Compilations with other kinds bcc attaches itself are not cached at all
        (compile_cache.AUTOLOADED)."""
        for program in self.compiled.programs:
            name = program.name.encode()
            if name.startswith(b"tracepoint__"):
                self.attach_tracepoint(name[len(b"tracepoint__") :].replace(b"__", b":", 1), name)
            elif name.startswith(b"raw_tracepoint__"):
                self.attach_raw_tracepoint(name[len(b"raw_tracepoint__") :], name)

    @property
    def map_fds(self) -> dict[str, int]:
        """Table name -> the fd of its map in this process."""
        return dict(self._map_fds)

    # tables

    def _table(self, record: MapRecord) -> Any:
        """bcc's Table class for the map's type over our fd. bcc's constructors ask its compiled module for the
        type, flags and size (asked for no module, they answer -1, -1 and 0): they are set from the record."""
        cls = _TABLE_CLASSES.get(record.info.type)
        if cls is None:
            raise NotCacheable(f"table {record.name}: map type {record.info.type}")
        key_type = BPF._decode_table_type(json.loads(record.key_desc)) if record.key_desc else None
        leaf_type = BPF._decode_table_type(json.loads(record.leaf_desc))
        table = cls(self, 0, self._map_fds[record.name], key_type, leaf_type)
        table.ttype, table.flags, table.max_entries = record.info.type, record.info.flags, record.info.max_entries
        table._name = record.name.encode()
        return table

    @property
    def module(self) -> None:
        """bcc's compiled module, which a cached object does not have (bcc's Tables ask it for nothing we need)."""
        return None


def _open_map(record: MapRecord) -> int:
    """A map like the recorded one: the one pinned at its pin when there is one (the conntrack tables continue
    there: ct_pins.py checked their shape before), else a new one, pinned there when it is to be."""
    if record.pin is not None and Path(record.pin).exists():
        return obj_get(record.pin)
    fd = map_create(record.info)
    if record.pin is not None:
        try:
            obj_pin(fd, record.pin)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _prog_name(function: str) -> str:
    for prefix in _NAME_PREFIXES:
        if function.startswith(prefix):
            return function[len(prefix) :][:15]
    return function[:15]
