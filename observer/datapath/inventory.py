"""The datapath as the kernel holds it, for `flowscope bpf`: the programs on every device's tcx hooks, the
programs and maps the agent holds with their fill, the tail-call slots, and, when asked, each program's run
count and run time over a short window.

What is listed is what the kernel says, not what the loader meant to do: the programs and maps are the ones
this process holds a file descriptor of (/proc/self/fd), whoever loaded them (the tc datapath, the kernel drop
program, a trace session), and the hooks are asked with BPF_PROG_QUERY, so a program someone else put on a
hook shows up too. Names come from the kernel (a C function's name cut to 15 characters).

Statistics: the kernel counts runs and their time only while BPF statistics are on, and that costs every run
of every program on the machine two clock reads. So they are switched on (BPF_ENABLE_STATS, which hands out an
fd that keeps them on) only for the window asked, the counters read at both ends of it, and the fd closed in a
`finally`; were the agent killed meanwhile, its fd would close with it. The counters are cumulative over every
window anyone took, which is why a window's figures are differences. Switching them on needs CAP_SYS_ADMIN,
which the deployed agent does not hold (deploy/kubernetes/agent.yaml): a window is then StatsUnavailable, with
the reason, while the rest of the inventory needs no more than the agent has.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from flowscope.observer.datapath import pins
from flowscope.observer.datapath.bpfsys import (
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    MapInfo,
    ProgInfo,
    enable_stats,
    map_info,
    map_lookup,
    map_next_key,
    obj_get,
    prog_info,
    prog_info_by_id,
    prog_query,
)

MAX_STATS_WINDOW_S = 60.0

# enum bpf_prog_type and enum bpf_map_type (include/uapi/linux/bpf.h), the ones a person meets here
PROGRAM_TYPES = {1: "socket_filter", 2: "kprobe", 3: "sched_cls", 4: "sched_act", 5: "tracepoint", 6: "xdp"}
PROGRAM_TYPES |= {7: "perf_event", 8: "cgroup_skb", 17: "raw_tracepoint", 26: "tracing", 28: "ext"}
MAP_TYPES = {1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash", 6: "percpu_array"}
MAP_TYPES |= {7: "stack_trace", 9: "lru_hash", 10: "lru_percpu_hash", 11: "lpm_trie", 12: "array_of_maps"}
MAP_TYPES |= {13: "hash_of_maps", 22: "queue", 23: "stack", 27: "ringbuf", 30: "bloom_filter"}
_KEYED = {"hash", "percpu_hash", "lru_hash", "lru_percpu_hash", "lpm_trie", "hash_of_maps"}


class StatsUnavailable(Exception):
    """Kernel BPF statistics cannot be switched on here, so no window can be counted: a fact of the agent's
    privileges or kernel, not of the request; the message says which."""


Fill = Callable[[], int]  # how many entries of a map are in use, where the map's owner knows better (ct4, ct6)


@dataclass(frozen=True)
class Program:
    id: int
    name: str
    type: str  # "": another's program this process may not open (BPF_PROG_GET_FD_BY_ID needs CAP_SYS_ADMIN)
    held: bool  # this process holds it (False: another's program on a hook of this namespace)
    map_ids: tuple[int, ...] = ()
    pinned: str = ""
    run_count: int = 0  # over the stats window (a tail-called program runs inside its caller's run)
    run_time_ns: int = 0

    @property
    def average_ns(self) -> float:
        return self.run_time_ns / self.run_count if self.run_count else 0.0


@dataclass(frozen=True)
class Hook:
    """One tcx hook of a device, and the ids of the programs on it in running order."""

    device: str
    ifindex: int
    direction: str  # "ingress" or "egress"
    program_ids: tuple[int, ...]


@dataclass(frozen=True)
class Slot:
    slot: int
    stage: str  # what the loader puts there ("" when it names none)
    program_id: int  # 0: empty


@dataclass(frozen=True)
class Map:
    id: int
    name: str
    type: str
    key_size: int
    value_size: int
    max_entries: int  # a ringbuf's: its size in bytes
    flags: int
    used: int | None  # entries in use; None: an array, whose every slot exists (a ringbuf: bytes unread)
    pinned: str = ""
    slots: tuple[Slot, ...] = ()  # a prog_array's filled or named slots


@dataclass(frozen=True)
class Inventory:
    hooks: tuple[Hook, ...]
    programs: tuple[Program, ...]
    maps: tuple[Map, ...]
    stats_window_s: float | None  # None: no statistics taken

    def program(self, program_id: int) -> Program | None:
        return next((p for p in self.programs if p.id == program_id), None)


class InventoryReader:
    """Reads the Inventory of the calling thread's network namespace and process (the agent's).

    `stages` names the slots of each prog_array the loader fills (`{"calls": {0: "stage_ipv4", ...}}`), so an
    empty slot that should hold a stage shows; `fills` counts the maps whose use a generic count cannot tell
    (the conntrack tables are arrays whose empty slots are zero)."""

    def __init__(
        self, stages: Mapping[str, Mapping[int, str]] | None = None, fills: Mapping[str, Fill] | None = None
    ) -> None:
        self._stages = dict(stages or {})
        self._fills = dict(fills or {})

    def read(self, stats_window_s: float = 0.0, stop: threading.Event | None = None) -> Inventory:
        """What is there now; with a window, the programs' runs over it (cut short when `stop` is set), or
        StatsUnavailable when the kernel will not count them for us."""
        if not 0 <= stats_window_s <= MAX_STATS_WINDOW_S:
            raise ValueError(f"the stats window is 0 to {MAX_STATS_WINDOW_S:g} s, not {stats_window_s:g} s")
        hooks = tuple(tcx_hooks())
        pinned = pinned_ids(pins.pin_dir())
        with held_objects() as (prog_fds, map_fds):
            programs = _programs(prog_fds, hooks, pinned)
            maps = tuple(self._map(fd, info, pinned) for fd, info in _map_infos(map_fds))
            if stats_window_s > 0:
                programs = _with_stats(programs, prog_fds, stats_window_s, stop or threading.Event())
        return Inventory(hooks, programs, tuple(sorted(maps, key=lambda m: m.name)), stats_window_s or None)

    def _map(self, fd: int, info: MapInfo, pinned: Mapping[str, str]) -> Map:
        kind = MAP_TYPES.get(info.type, f"type {info.type}")
        slots: tuple[Slot, ...] = ()
        if info.name in self._fills:
            used: int | None = self._fills[info.name]()
        elif kind in _KEYED:
            used = count_keys(fd, info.key_size, info.max_entries)
        elif kind == "prog_array":
            slots = tuple(self._slots(fd, info))
            used = sum(1 for s in slots if s.program_id)
        elif kind == "ringbuf":
            used = ringbuf_unread(fd)
        else:
            used = None
        return Map(
            info.id,
            info.name,
            kind,
            info.key_size,
            info.value_size,
            info.max_entries,
            info.flags,
            used,
            pinned.get(_map_key(info.id), ""),
            slots,
        )

    def _slots(self, fd: int, info: MapInfo) -> Iterator[Slot]:
        stages = self._stages.get(info.name, {})
        for slot in range(info.max_entries):
            value = map_lookup(fd, struct.pack("<I", slot), info.value_size)
            program_id = struct.unpack("<I", value[:4])[0] if value else 0
            if program_id or slot in stages:
                yield Slot(slot, stages.get(slot, ""), program_id)


def tcx_hooks() -> Iterator[Hook]:
    """Every tcx hook of a device of this network namespace that has a program."""
    for ifindex, device in sorted(socket.if_nameindex()):
        for direction, attach_type in (("ingress", BPF_TCX_INGRESS), ("egress", BPF_TCX_EGRESS)):
            ids = prog_query(ifindex, attach_type)
            if ids:
                yield Hook(device, ifindex, direction, tuple(ids))


@contextlib.contextmanager
def held_objects() -> Iterator[tuple[dict[int, int], dict[int, int]]]:
    """The programs and maps this process holds: (program id -> fd, map id -> fd), on fds of our own (dups), so
    that one the agent closes meanwhile cannot turn into something else under us."""
    programs: dict[int, int] = {}
    maps: dict[int, int] = {}
    try:
        for fd, kind in _bpf_fds():
            try:
                own = os.dup(fd)
            except OSError:
                continue
            try:
                found = programs if kind == "prog" else maps
                object_id = prog_info(own).id if kind == "prog" else map_info(own).id
            except OSError:
                os.close(own)
                continue
            if object_id in found:
                os.close(own)
            else:
                found[object_id] = own
        yield programs, maps
    finally:
        for fd in (*programs.values(), *maps.values()):
            os.close(fd)


def _bpf_fds() -> Iterator[tuple[int, str]]:
    """(fd, "prog" or "map") for every BPF program and map fd of this process (a link's fd is neither)."""
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        kind = _fd_kind(fd)
        if kind is not None:
            yield fd, kind


def _fd_kind(fd: int) -> str | None:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return {"anon_inode:bpf-prog": "prog", "anon_inode:bpf-map": "map"}.get(target)


def pinned_ids(folder: Path) -> dict[str, str]:
    """What is pinned under `folder`: "prog:<id>" or "map:<id>" -> the pin's path (links are left out)."""
    found: dict[str, str] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        try:
            fd = obj_get(str(path))
        except OSError:
            continue
        try:
            kind = _fd_kind(fd)
            if kind == "prog":
                found[_prog_key(prog_info(fd).id)] = str(path)
            elif kind == "map":
                found[_map_key(map_info(fd).id)] = str(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


def _prog_key(program_id: int) -> str:
    return f"prog:{program_id}"


def _map_key(map_id: int) -> str:
    return f"map:{map_id}"


def _programs(prog_fds: Mapping[int, int], hooks: tuple[Hook, ...], pinned: Mapping[str, str]) -> tuple[Program, ...]:
    """The programs held, then those on a hook that are not: each once, the ones on hooks first, and last the
    ones on hooks this process may not open (an agent without CAP_SYS_ADMIN), known by their id only."""
    infos: dict[int, tuple[ProgInfo, bool]] = {}
    unreadable: dict[int, Program] = {}
    for hook in hooks:
        for program_id in hook.program_ids:
            if program_id not in infos and program_id not in prog_fds:
                try:
                    infos[program_id] = (prog_info_by_id(program_id), False)
                except PermissionError:
                    unreadable[program_id] = Program(program_id, "", "", held=False)
                except OSError:  # gone meanwhile
                    pass
    for fd in prog_fds.values():
        with contextlib.suppress(OSError):
            info = prog_info(fd)
            infos[info.id] = (info, True)
    on_hooks = {program_id for hook in hooks for program_id in hook.program_ids}
    ordered = sorted(infos.values(), key=lambda item: (item[0].id not in on_hooks, item[0].name, item[0].id))
    return tuple(
        Program(
            info.id,
            info.name,
            PROGRAM_TYPES.get(info.type, f"type {info.type}"),
            held,
            info.map_ids,
            pinned.get(_prog_key(info.id), ""),
        )
        for info, held in ordered
    ) + tuple(unreadable.values())


def _map_infos(map_fds: Mapping[int, int]) -> Iterator[tuple[int, MapInfo]]:
    for fd in map_fds.values():
        with contextlib.suppress(OSError):
            yield fd, map_info(fd)


def _with_stats(
    programs: tuple[Program, ...], prog_fds: Mapping[int, int], window_s: float, stop: threading.Event
) -> tuple[Program, ...]:
    """The programs with their runs over the window: statistics on, counters read, wait, read again, off."""
    try:
        stats_fd = enable_stats()
    except OSError as exc:
        raise StatsUnavailable(_why_no_stats(exc.errno)) from exc
    try:
        before = _counters(programs, prog_fds)
        stop.wait(window_s)
        after = _counters(programs, prog_fds)
    finally:
        os.close(stats_fd)
    result = []
    for program in programs:
        start, end = before.get(program.id), after.get(program.id)
        if start is None or end is None:
            result.append(program)
            continue
        result.append(replace(program, run_count=end[0] - start[0], run_time_ns=end[1] - start[1]))
    return tuple(result)


def _why_no_stats(err: int | None) -> str:
    """The kernel's refusal of BPF_ENABLE_STATS in words that say what to change."""
    if err == errno.EPERM:
        return (
            "switching kernel BPF statistics on (BPF_ENABLE_STATS) needs CAP_SYS_ADMIN, and the agent runs without it"
        )
    if err == errno.EINVAL:
        return "this kernel cannot switch BPF statistics on for a caller (BPF_ENABLE_STATS came with Linux 5.8)"
    return f"switching kernel BPF statistics on (BPF_ENABLE_STATS) failed: {os.strerror(err or 0)}"


def _counters(programs: tuple[Program, ...], prog_fds: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """Program id -> (run_cnt, run_time_ns), cumulative, for those still there."""
    counters = {}
    for program in programs:
        with contextlib.suppress(OSError):
            fd = prog_fds.get(program.id)
            info = prog_info(fd) if fd is not None else prog_info_by_id(program.id)
            counters[program.id] = (info.run_cnt, info.run_time_ns)
    return counters


def count_keys(fd: int, key_size: int, limit: int) -> int:
    """How many keys a hash-like map holds, walking them with BPF_MAP_GET_NEXT_KEY (at most `limit`: a walk
    that meets a deleted key starts over, so a busy map could otherwise be counted twice)."""
    count, key = 0, None
    while count < limit:
        try:
            key = map_next_key(fd, key, key_size)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # a map type without iteration
                break
            raise
        if key is None:
            break
        count += 1
    return count


def ringbuf_unread(fd: int) -> int:
    """Bytes a ring buffer's producer wrote that its consumer has not read: the positions on its first two
    pages (consumer, then producer), mapped read-only for the moment of the read."""
    page = mmap.PAGESIZE
    with mmap.mmap(fd, 2 * page, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
        consumer = struct.unpack_from("<Q", mapped, 0)[0]
        producer = struct.unpack_from("<Q", mapped, page)[0]
    return max(int(producer) - int(consumer), 0)
