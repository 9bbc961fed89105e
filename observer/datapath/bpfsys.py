"""The bpf(2) commands bcc 0.26 does not wrap: pinning, object info, program test runs, tcx links, program
queries, raw map reads by fd, kernel BPF statistics.

Called through ctypes with the attribute layouts of include/uapi/linux/bpf.h (stable ABI: fields are only ever
appended, and the kernel accepts a shorter attribute from an older caller).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from dataclasses import dataclass

_SYS_BPF = {"x86_64": 321, "aarch64": 280}

BPF_OBJ_PIN = 6
BPF_PROG_TEST_RUN = 10
BPF_OBJ_GET_INFO_BY_FD = 15

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """bpf(cmd, &attr, sizeof(attr)); raises OSError with the kernel's errno."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(f"bpf(2): unknown syscall number on {platform.machine()}")
    ret = _libc.syscall(number, ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return int(ret)


class _PinAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


def obj_pin(fd: int, path: str) -> None:
    """Pin a map or program at a path in a bpffs: it then lives until the file is removed."""
    name = ctypes.create_string_buffer(path.encode())
    bpf(BPF_OBJ_PIN, _PinAttr(pathname=ctypes.addressof(name), bpf_fd=fd, file_flags=0))


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class _ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),  # kernel BPF statistics: counted only while they are on (enable_stats)
        ("run_cnt", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    flags: int = 0  # BPF_F_* it was created with


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    map_ids: tuple[int, ...] = ()  # the maps it uses
    run_cnt: int = 0  # runs and their time while kernel BPF statistics were on, cumulative (enable_stats)
    run_time_ns: int = 0


def _get_info(fd: int, info: ctypes.Structure) -> None:
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    _get_info(fd, info)
    return MapInfo(
        info.id, info.type, info.key_size, info.value_size, info.max_entries, info.name.decode(), info.map_flags
    )


_MAX_MAP_IDS = 64


def prog_info(fd: int) -> ProgInfo:
    info = _ProgInfo()
    map_ids = (ctypes.c_uint32 * _MAX_MAP_IDS)()
    info.nr_map_ids, info.map_ids = _MAX_MAP_IDS, ctypes.addressof(map_ids)
    _get_info(fd, info)
    used = tuple(map_ids[: min(info.nr_map_ids, _MAX_MAP_IDS)])
    return ProgInfo(info.id, info.type, info.name.decode(), used, info.run_cnt, info.run_time_ns)


BPF_OBJ_GET = 7
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34
BPF_TCX_INGRESS = 46  # enum bpf_attach_type
BPF_TCX_EGRESS = 47


class _LinkCreateAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("target_ifindex", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("relative_fd", ctypes.c_uint32),  # tcx: 0 with no BPF_F_BEFORE/AFTER flag, i.e. appended
        ("pad", ctypes.c_uint32),
        ("expected_revision", ctypes.c_uint64),
    ]


class _LinkUpdateAttr(ctypes.Structure):
    _fields_ = [
        ("link_fd", ctypes.c_uint32),
        ("new_prog_fd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("old_prog_fd", ctypes.c_uint32),
    ]


class _LinkDetachAttr(ctypes.Structure):
    _fields_ = [("link_fd", ctypes.c_uint32)]


def tcx_link_create(prog_fd: int, ifindex: int, attach_type: int) -> int:
    """Attach a sched_cls program to a device's tcx hook (BPF_TCX_INGRESS or BPF_TCX_EGRESS); the link's fd.
    The program stays attached while the link lives: as long as an fd or a pin holds it."""
    return bpf(BPF_LINK_CREATE, _LinkCreateAttr(prog_fd=prog_fd, target_ifindex=ifindex, attach_type=attach_type))


def link_update(link_fd: int, prog_fd: int) -> None:
    """Put another program in a link, atomically: the hook never runs without one."""
    bpf(BPF_LINK_UPDATE, _LinkUpdateAttr(link_fd=link_fd, new_prog_fd=prog_fd))


def link_detach(link_fd: int) -> None:
    """Take the link's program off its hook now, whoever else holds the link (its pin, say)."""
    bpf(BPF_LINK_DETACH, _LinkDetachAttr(link_fd=link_fd))


def obj_get(path: str) -> int:
    """An fd of the object (map, program, link) pinned at `path`."""
    name = ctypes.create_string_buffer(path.encode())
    return bpf(BPF_OBJ_GET, _PinAttr(pathname=ctypes.addressof(name), bpf_fd=0, file_flags=0))


BPF_PROG_GET_FD_BY_ID = 13


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


def prog_fd_by_id(prog_id: int) -> int:
    """An fd of a loaded program, by its id (the caller closes it)."""
    return bpf(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=prog_id))


def prog_info_by_id(prog_id: int) -> ProgInfo:
    fd = prog_fd_by_id(prog_id)
    try:
        return prog_info(fd)
    finally:
        os.close(fd)


BPF_PROG_QUERY = 16


class _QueryAttr(ctypes.Structure):
    _fields_ = [
        ("target_ifindex", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("prog_attach_flags", ctypes.c_uint64),
        ("link_ids", ctypes.c_uint64),
        ("link_attach_flags", ctypes.c_uint64),
        ("revision", ctypes.c_uint64),
    ]


def prog_query(ifindex: int, attach_type: int) -> list[int]:
    """The ids of the programs on one hook (a tcx one, say) of a device of this namespace, in running order."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _QueryAttr(target_ifindex=ifindex, attach_type=attach_type, prog_ids=ctypes.addressof(ids), count=64)
    try:
        bpf(BPF_PROG_QUERY, attr)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENOENT):
            return []
        raise
    return list(ids[: attr.count])


BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_GET_FD_BY_ID = 14
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0


class _MapElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # next_key for BPF_MAP_GET_NEXT_KEY
        ("flags", ctypes.c_uint64),
    ]


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value at `key`, or None when there is none (a prog_array's value reads as the program's id)."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    value = ctypes.create_string_buffer(value_size)
    attr = _MapElemAttr(map_fd=fd, key=ctypes.addressof(key_buf), value=ctypes.addressof(value))
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return value.raw


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after `key` (the first one for None), or None past the last one."""
    key_buf = ctypes.create_string_buffer(key, key_size) if key is not None else None
    next_key = ctypes.create_string_buffer(key_size)
    address = ctypes.addressof(key_buf) if key_buf is not None else 0
    attr = _MapElemAttr(map_fd=fd, key=address, value=ctypes.addressof(next_key))
    try:
        bpf(BPF_MAP_GET_NEXT_KEY, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return next_key.raw


def map_fd_by_id(map_id: int) -> int:
    """An fd of a map, by its id (the caller closes it)."""
    return bpf(BPF_MAP_GET_FD_BY_ID, _IdAttr(id=map_id))


class _EnableStatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


def enable_stats() -> int:
    """Switch kernel BPF statistics (every program's run_cnt and run_time_ns) on; they stay on while the
    returned fd is open, and go off with its last close (also when the process dies) unless someone else
    holds them on. They cost every program run two clock reads, so they are never left on."""
    return bpf(BPF_ENABLE_STATS, _EnableStatsAttr(type=BPF_STATS_RUN_TIME))


BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_OBJ_NAME_LEN = 16


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


def map_create(info: MapInfo) -> int:
    """A new map of the same type, sizes, flags and name as `info` describes; its fd."""
    attr = _MapCreateAttr(
        map_type=info.type,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        map_flags=info.flags,
        map_name=info.name.encode()[: BPF_OBJ_NAME_LEN - 1],
    )
    return bpf(BPF_MAP_CREATE, attr)


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


_VERIFIER_LOG_SIZE = 1 << 20


def prog_load(prog_type: int, insns: bytes, license: str, name: str) -> int:
    """Load a program (eBPF instructions, 8 bytes each, map fds already in place); its fd.

    A program the verifier rejects is loaded again with the verifier's log, and its tail is in the OSError.
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    licence = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(licence),
        prog_name=name.encode()[: BPF_OBJ_NAME_LEN - 1],
    )
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        log = ctypes.create_string_buffer(_VERIFIER_LOG_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = 1, _VERIFIER_LOG_SIZE, ctypes.addressof(log)
        try:
            return bpf(BPF_PROG_LOAD, attr)  # a load that failed once may pass (a transient ENOMEM)
        except OSError:
            tail = log.value.decode(errors="replace").strip().splitlines()[-3:]
            raise OSError(exc.errno, f"loading {name}: {exc.strerror}: {' | '.join(tail)}") from None


def prog_tag(fd: int) -> bytes:
    """The kernel's tag of a loaded program: a hash of its instructions with map references left out, so two
    loads of the same code over different maps have the same tag."""
    info = _ProgInfo()
    _get_info(fd, info)
    return bytes(info.tag)
