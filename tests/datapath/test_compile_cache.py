"""The compile cache with real compilations, programs and maps (observer/datapath/compile_cache.py,
cached_object.py): a warm load gives the kernel the same programs bcc loaded (the kernel's tags), over maps made
alike, whose bcc Tables and programs work; a change of the text, a flag or what the caller adds misses; a
truncated or corrupt entry is compiled and written again; the folder stays bounded; kdrop.c's tracepoint is
attached on a warm load as bcc attaches it."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bcc import BPF
from bcc.libbcc import lib

from flowscope.observer.datapath import kdrop, pathtrace, tick_clock
from flowscope.observer.datapath.bpfsys import MapInfo, map_info, prog_info, prog_tag
from flowscope.observer.datapath.btf import running_kernel
from flowscope.observer.datapath.c_source import DatapathConfig, cflags, tail_call_slots, translation_unit
from flowscope.observer.datapath.cached_object import CachedObject, Compilation, _compiling, compile_or_load, precompile
from flowscope.observer.datapath.compile_cache import (
    CompileCache,
    CompiledObject,
    NotCacheable,
    ProgramRecord,
    _map_refs,
)
from flowscope.observer.datapath.kdrop import KernelDropConfig, KernelDrops
from flowscope.observer.datapath.loader import TOOL_PROGRAMS
from flowscope.observer.datapath.netns_maps import netns_inode
from flowscope.observer.datapath.tc import Hook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kdrop"))
from kdrop_helpers import read_until, remove_netns, scratch_netns, send_in

pytestmark = pytest.mark.bpf

TEXT = translation_unit()
FLAGS = (
    *cflags(DatapathConfig(ring_buffer_pages=64, l7_ring_buffer_pages=64)),
    "-DFS_CT_SEED=7U",
    *pathtrace.kernel_flags(),
)
COMPILATION = Compilation(TEXT, FLAGS)
SCHED_CLS = [hook.program for hook in Hook] + list(tail_call_slots().values()) + list(TOOL_PROGRAMS)
RAW_TRACEPOINTS = list(pathtrace.TRACEPOINTS.values()) if pathtrace.kernel_flags() else []


def programs(bpf: Any) -> dict[str, tuple[str, str, int]]:
    """Every program loaded: name -> (the kernel's tag, its name, its type)."""
    loaded = {}
    for name, prog_type in [(n, BPF.SCHED_CLS) for n in SCHED_CLS] + [(n, BPF.RAW_TRACEPOINT) for n in RAW_TRACEPOINTS]:
        fd = bpf.load_func(name.encode(), prog_type).fd
        info = prog_info(fd)
        loaded[name] = (prog_tag(fd).hex(), info.name, info.type)
    return loaded


def maps(bpf: Any, names: list[str]) -> dict[str, MapInfo]:
    """Every map, as the kernel describes it, less its id (some have no bcc Table: `scratch`'s values are not
    8-byte aligned, so their fds are asked for by name)."""
    found = {}
    for name in names:
        fd = bpf.map_fds[name] if isinstance(bpf, CachedObject) else lib.bpf_table_fd(bpf.module, name.encode())
        info = map_info(fd)
        found[name] = MapInfo(0, info.type, info.key_size, info.value_size, info.max_entries, info.name, info.flags)
    return found


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CompileCache, dict[str, Any], dict[str, Any]]]:
    """The cache after one cold start (compiled in a child, recorded, loaded from the entry), and what bcc itself
    loads for the same compilation in this process (programs, maps), to compare with."""
    cache = CompileCache(tmp_path_factory.mktemp("compile-cache"))
    reference = compile_or_load(COMPILATION, None)
    try:
        assert isinstance(reference, BPF)
        entry = None
        first = compile_or_load(COMPILATION, cache)
        try:
            assert isinstance(first, CachedObject)
            entry = cache.get(COMPILATION.key(cache))
            assert entry is not None
            names = [m.name for m in entry.maps]
            assert programs(first) == programs(reference)
            assert maps(first, names) == maps(reference, names)
        finally:
            first.cleanup()
        yield cache, programs(reference), maps(reference, names)
    finally:
        reference.cleanup()


def test_a_warm_load_gives_the_kernel_the_same_programs(
    cold: tuple[CompileCache, dict, dict], caplog: pytest.LogCaptureFixture
) -> None:
    cache, bcc_programs, bcc_maps = cold
    caplog.set_level(logging.INFO)
    warm = compile_or_load(COMPILATION, cache)
    try:
        assert "loading the programs compiled earlier" in caplog.text  # no child compiled it again
        assert len(bcc_programs) >= 16
        assert programs(warm) == bcc_programs
        assert maps(warm, list(bcc_maps)) == bcc_maps
    finally:
        warm.cleanup()


def test_a_warm_load_runs_and_its_tables_read_and_write(cold: tuple[CompileCache, dict, dict]) -> None:
    cache, _programs, _maps = cold
    warm = compile_or_load(COMPILATION, cache)
    try:
        assert isinstance(warm, CachedObject)
        # a program run by the kernel (BPF_PROG_TEST_RUN), reading the clock through its maps
        clock = tick_clock.measure(warm.load_func(b"clock_sample", BPF.SCHED_CLS).fd)
        assert clock.jiffy_ns > 0
        config = warm[b"config"]
        value = config.Leaf()
        value.jiffy_ns = 4_000_000
        config[config.Key(0)] = value
        assert config[config.Key(0)].jiffy_ns == 4_000_000
        assert [int(n) for n in warm[b"lost"][warm[b"lost"].Key(0)]] == [0] * len(warm[b"lost"].Leaf())
        calls = warm[b"calls"]
        slot, stage = next(iter(tail_call_slots().items()))
        calls[calls.Key(slot)] = calls.Leaf(warm.load_func(stage.encode(), BPF.SCHED_CLS).fd)
        del calls[calls.Key(slot)]
    finally:
        warm.cleanup()


def test_a_change_in_the_text_a_flag_or_the_callers_input_misses(
    cold: tuple[CompileCache, dict, dict], caplog: pytest.LogCaptureFixture
) -> None:
    cache, _programs, _maps = cold
    key = COMPILATION.key(cache)
    other_seed = tuple(flag.replace("FS_CT_SEED=7U", "FS_CT_SEED=8U") for flag in FLAGS)
    others = [
        Compilation(TEXT + " ", FLAGS),
        Compilation(TEXT, other_seed),
        Compilation(TEXT, FLAGS, extra_key=b"x"),
        Compilation(TEXT, (*FLAGS, "-DFS_UNUSED=1")),
    ]
    assert len({key, *(other.key(cache) for other in others)}) == 5
    assert COMPILATION.key(cache) == key  # and the same inputs hit
    caplog.set_level(logging.INFO)
    changed = compile_or_load(others[1], cache)
    changed.cleanup()
    assert "compiled and stored" in caplog.text  # not loaded from the entry of the other seed
    assert cache.get(others[1].key(cache)) is not None


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty"])
def test_a_damaged_entry_is_compiled_and_written_again(
    cold: tuple[CompileCache, dict, dict], tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = CompileCache(tmp_path)
    key = COMPILATION.key(cache)
    shutil.copy(cold[0].path(key), cache.path(key))
    data = cache.path(key).read_bytes()
    if damage == "truncated":  # a kill -9 while writing, had it not been for the rename
        data = data[: len(data) // 2]
    elif damage == "corrupt":  # same length, one byte changed
        data = data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]
    else:
        data = b""
    cache.path(key).write_bytes(data)
    assert cache.get(key) is None and not cache.path(key).exists()

    cache.path(key).write_bytes(data)
    caplog.set_level(logging.INFO)
    rebuilt = compile_or_load(COMPILATION, cache)
    rebuilt.cleanup()
    assert "compiled and stored" in caplog.text
    assert cache.path(key).read_bytes() == cold[0].path(key).read_bytes()  # the same compilation, the same bytes


def test_an_entry_others_could_write_is_not_loaded(cold: tuple[CompileCache, dict, dict], tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    key = COMPILATION.key(cache)
    shutil.copy(cold[0].path(key), cache.path(key))
    tmp_path.chmod(0o700)
    assert cache.get(key) is not None
    cache.path(key).chmod(0o666)
    assert cache.get(key) is None
    cache.path(key).chmod(0o600)
    tmp_path.chmod(0o777)
    assert cache.get(key) is None
    tmp_path.chmod(0o700)
    assert cache.get(key) is not None


def test_a_compilation_that_fails_says_why(tmp_path: Path) -> None:
    broken = Compilation("int f(void) { return no_such_name; }\n", ())
    with pytest.raises(RuntimeError, match="no_such_name"):
        compile_or_load(broken, CompileCache(tmp_path))
    assert list(tmp_path.glob("*.bpfobj")) == []


def test_compilations_started_early_run_side_by_side(cold: tuple[CompileCache, dict, dict], tmp_path: Path) -> None:
    """precompile() starts children; compile_or_load() of the same compilations waits for them."""
    cache = CompileCache(tmp_path)
    shutil.copy(cold[0].path(COMPILATION.key(cold[0])), cache.path(COMPILATION.key(cache)))
    kdrop_compilation = kdrop.compilation(KernelDropConfig(), running_kernel())
    precompile(COMPILATION, cache)  # in the cache: nothing to start
    precompile(kdrop_compilation, cache)
    assert list(_compiling) == [kdrop_compilation.key(cache)]
    loaded = compile_or_load(kdrop_compilation, cache)
    try:
        assert isinstance(loaded, CachedObject) and not _compiling
    finally:
        loaded.cleanup()


def test_the_folder_keeps_the_entries_used_last(cold: tuple[CompileCache, dict, dict], tmp_path: Path) -> None:
    source = cold[0]
    entry = source.get(source.key(TEXT, FLAGS))
    assert entry is not None
    cache = CompileCache(tmp_path, keep=3)
    left = tmp_path / ".writing-left-by-a-killed-writer"
    left.write_bytes(b"partial")
    for number in range(3):
        cache.put(f"k{number}", entry)
        os.utime(cache.path(f"k{number}"), (1000 + number, 1000 + number))
    assert cache.get("k0") is not None  # used last: kept longer than k1 and k2
    cache.put("k3", entry)
    cache.put("k4", entry)
    kept = sorted(path.stem for path in cache.entries())
    assert kept == ["k0", "k3", "k4"]
    assert left.exists()  # young: it may be a write in progress
    shutil.copy(left, tmp_path / ".writing-old")
    old = tmp_path / ".writing-old"
    os.utime(old, (0, 0))
    cache.prune()
    assert not old.exists()


def test_what_a_warm_load_could_not_reproduce_is_not_cached() -> None:
    by_fd = {5: "events"}
    ld_map = struct.pack("<BBhi", 0x18, 0x10 | 1, 0, 5) + struct.pack("<BBhi", 0, 0, 0, 0)
    ld_value = struct.pack("<BBhi", 0x18, 0x20 | 1, 0, 5) + struct.pack("<BBhi", 0, 0, 0, 0)
    exit_insn = struct.pack("<BBhi", 0x95, 0, 0, 0)
    assert _map_refs("p", ld_map + exit_insn, by_fd) == ((0, "events"),)
    with pytest.raises(NotCacheable):
        _map_refs("p", ld_value + exit_insn, by_fd)
    program = ProgramRecord("p", ld_map + exit_insn, ((0, "events"),))
    assert CompiledObject("GPL", (), (program,)).to_json()  # and it serialises as it is
    with pytest.raises(NotCacheable):
        _map_refs("p", ld_map + exit_insn, {6: "other"})


def test_a_warm_kernel_drop_program_is_attached_and_reports(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path)
    netns = scratch_netns("cc")
    try:
        with KernelDrops() as bcc_loaded:  # compiled by bcc here
            bcc_tag = prog_tag(bcc_loaded.program_fd())
        with KernelDrops(cache=cache) as cold:  # compiled in a child, loaded from the entry
            assert prog_tag(cold.program_fd()) == bcc_tag
        assert len(cache.entries()) == 1
        with KernelDrops(cache=cache) as warm:
            assert isinstance(warm._bpf, CachedObject)
            assert prog_tag(warm.program_fd()) == bcc_tag
            warm.set_namespaces({netns_inode(netns) or 0: 5})
            warm.configure(reports_per_second=0)
            send_in(netns, "127.0.0.1", 7099, 41099)
            records = read_until(warm.reader(), lambda r: bool(np.any(r["dport"] == 7099)))
            assert np.any(records["dport"] == 7099)
    finally:
        remove_netns(netns)
