"""A cache of what bcc compiled, so that a start whose programs have not changed runs neither clang nor LLVM.

Why: bcc compiles the C on every start, in this process: bpf/datapath.c takes ~3.3 s of an agent start of
~4.5 s, bpf/kdrop.c another 0.3-0.6 s. Its output is plain: per program eBPF instructions, in which every map
is an ld_imm64 of the map's file descriptor (BPF_PSEUDO_MAP_FD), and per map its creation attributes and the
type descriptions its Python Table objects are made from. A cold start compiles with bcc as before and records
that (CompiledObject.of); a warm start creates the maps itself, writes their new fds into the instructions and
loads them (cached_object.py). Programs loaded either way have the same kernel tag.

The key is everything the output depends on: the translation unit's text (our headers are spliced into it), the
-D flags (including the per-start ones: the conntrack seed and pin folder, ring sizes, caplen), bcc's version and
library, the kernel's release and build, its BTF, and whatever the caller adds (kdrop.c: the tracepoint's
format, from which bcc writes the probe's argument struct). A change in any of them misses.

An entry is one file, written under a temporary name and renamed, whose first line is the SHA-256 of the rest:
a partial or corrupt entry (a kill -9 while writing, a full disk) reads as a miss and is written again. The
folder keeps the entries used last (KEEP); readers and writers in several processes at once are fine.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bcc import __version__ as BCC_VERSION
from bcc.libbcc import lib

from flowscope.observer.datapath.bpfsys import MapInfo, map_info, obj_get

log = logging.getLogger(__name__)

DEFAULT_FOLDER = Path("/var/cache/flowscope/datapath")
KEEP = 16  # entries: a lab node's datapath differs by its pin folder and seed, so one per node, and kdrop's
FORMAT = 1  # of an entry; part of the key, so a new format never reads an old entry

# functions bcc attaches on compiling (its _trace_autoload) that a warm start does not attach the same way;
# tracepoint__ and raw_tracepoint__ ones it does (cached_object.py)
AUTOLOADED = (b"kprobe__", b"kretprobe__", b"kfunc__", b"kretfunc__", b"lsm__")

BPF_LD_IMM64 = 0x18
BPF_PSEUDO_MAP_FD = 1
INSN_SIZE = 8

lib.bpf_num_tables.restype = lib.bpf_num_functions.restype
lib.bpf_num_tables.argtypes = lib.bpf_num_functions.argtypes
lib.bpf_table_name.restype = lib.bpf_function_name.restype
lib.bpf_table_name.argtypes = lib.bpf_function_name.argtypes
lib.bpf_table_fd_id.restype = lib.bpf_table_fd.restype
lib.bpf_table_fd_id.argtypes = lib.bpf_table_type_id.argtypes


class NotCacheable(ValueError):
    """bcc produced something a warm start could not reproduce (an ld_imm64 that is not a map fd, say)."""


@dataclass(frozen=True)
class MapRecord:
    """One map as bcc created it: the kernel's own account of its attributes, bcc's descriptions of its key and
    value types (JSON, for bcc.BPF._decode_table_type), and where it is pinned if bcc took it from a pin."""

    name: str  # the table's name in the C (the kernel's is cut to 15 characters)
    info: MapInfo
    key_desc: str
    leaf_desc: str
    pin: str | None = None


@dataclass(frozen=True)
class ProgramRecord:
    """One function's instructions, and which map each map-fd ld_imm64 (by instruction index) refers to."""

    name: str
    insns: bytes
    map_refs: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class CompiledObject:
    """What one bcc compilation made: everything a warm start needs to load the same programs over new maps."""

    license: str
    maps: tuple[MapRecord, ...]
    programs: tuple[ProgramRecord, ...]

    @classmethod
    def of(cls, bpf: Any, pins: Mapping[str, Path] | None = None) -> CompiledObject:
        """Record a bcc BPF object right after it compiled. `pins`: table name -> the path it is pinned at, for
        the tables the C declares pinned (BPF_TABLE_PINNED): a warm start opens the pin, or creates and pins."""
        module = bpf.module
        maps: list[MapRecord] = []
        by_fd: dict[int, str] = {}
        for index in range(lib.bpf_num_tables(module)):
            name = lib.bpf_table_name(module, index)
            fd = lib.bpf_table_fd_id(module, index)
            if fd < 0:
                raise NotCacheable(f"table {name.decode()} has no map")
            info = dataclasses.replace(map_info(fd), id=0)  # ids and fds are this process's: not kept
            key_desc = lib.bpf_table_key_desc(module, name) or b""
            leaf_desc = lib.bpf_table_leaf_desc(module, name) or b""
            pin = _pin_of(fd, (pins or {}).get(name.decode()))
            maps.append(MapRecord(name.decode(), info, key_desc.decode(), leaf_desc.decode(), pin))
            by_fd[fd] = name.decode()
        programs = []
        for index in range(lib.bpf_num_functions(module)):
            name = lib.bpf_function_name(module, index)
            if name.startswith(AUTOLOADED):
                raise NotCacheable(f"{name.decode()}: bcc attaches it itself, and a warm start would not")
            insns = bytes(bpf.dump_func(name))
            refs = _map_refs(name.decode(), insns, by_fd)
            unplaced = _with_fds(insns, refs, dict.fromkeys(by_fd.values(), 0))  # fds are this process's
            programs.append(ProgramRecord(name.decode(), unplaced, refs))
        license = lib.bpf_module_license(module).decode()
        return cls(license, tuple(maps), tuple(programs))

    def program(self, name: str) -> ProgramRecord:
        for program in self.programs:
            if program.name == name:
                return program
        raise KeyError(name)

    # an entry's bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "license": self.license,
                "maps": [
                    {**vars(m), "info": vars(m.info)}  # MapInfo: plain ints and a name
                    for m in self.maps
                ],
                "programs": [
                    {"name": p.name, "insns": base64.b64encode(p.insns).decode(), "map_refs": p.map_refs}
                    for p in self.programs
                ],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CompiledObject:
        raw = json.loads(data)
        maps = tuple(MapRecord(**{**m, "info": MapInfo(**m["info"])}) for m in raw["maps"])
        programs = tuple(
            ProgramRecord(p["name"], base64.b64decode(p["insns"]), tuple((int(i), str(n)) for i, n in p["map_refs"]))
            for p in raw["programs"]
        )
        return cls(str(raw["license"]), maps, programs)


def _pin_of(fd: int, path: Path | None) -> str | None:
    """`path` when the map pinned there is the map of `fd` (bcc created and pinned it, or opened the pin)."""
    if path is None or not path.exists():
        return None
    pinned = obj_get(str(path))
    try:
        return str(path) if map_info(pinned).id == map_info(fd).id else None
    finally:
        os.close(pinned)


def _map_refs(name: str, insns: bytes, by_fd: Mapping[int, str]) -> tuple[tuple[int, str], ...]:
    """(instruction index, map name) of every ld_imm64 in a program; NotCacheable for one that is not a map fd
    of this compilation (a map value, a kernel symbol: nothing bcc 0.26 emits for our C, but never guessed)."""
    refs = []
    index = 0
    while index < len(insns) // INSN_SIZE:
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, index * INSN_SIZE)
        if code == BPF_LD_IMM64:
            source = regs >> 4
            if source == BPF_PSEUDO_MAP_FD and imm in by_fd:
                refs.append((index, by_fd[imm]))
            elif source != 0:
                raise NotCacheable(f"{name}: instruction {index} loads a 64-bit immediate of kind {source}")
            index += 2  # an ld_imm64 takes two instruction slots
        else:
            index += 1
    return tuple(refs)


def relocated(program: ProgramRecord, map_fds: Mapping[str, int]) -> bytes:
    """The program's instructions with each map reference set to that map's fd in this process."""
    return _with_fds(program.insns, program.map_refs, map_fds)


def _with_fds(insns: bytes, refs: Iterable[tuple[int, str]], map_fds: Mapping[str, int]) -> bytes:
    out = bytearray(insns)
    for index, name in refs:
        struct.pack_into("<i", out, index * INSN_SIZE + 4, map_fds[name])
    return bytes(out)


class CompileCache:
    """A folder of compiled objects by key (one file each); see the module's docstring."""

    def __init__(self, folder: Path = DEFAULT_FOLDER, keep: int = KEEP) -> None:
        self.folder = folder
        self.keep = keep

    def key(self, text: str, cflags: Iterable[str], extra: bytes = b"") -> str:
        """The hex digest of everything a compilation's output depends on."""
        h = hashlib.sha256()
        for part in (str(FORMAT).encode(), text.encode(), "\0".join(cflags).encode(), extra, _toolchain()):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        h.update(_kernel_digest())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.bpfobj"

    def get(self, key: str) -> CompiledObject | None:
        """The entry of `key`, or None: none, or partial or corrupt (which is removed, to be written again)."""
        path = self.path(key)
        try:
            with open(path, "rb") as entry:
                untrusted = _writable_by_others(self.folder) or _writable_by_others(entry.fileno())
                data = entry.read()
        except OSError:
            return None
        if untrusted:
            log.warning("compile cache: %s or its folder may be written by others than us; compiling", path)
            return None
        digest, _, payload = data.partition(b"\n")
        try:
            if digest.decode() != hashlib.sha256(payload).hexdigest():
                raise ValueError("its checksum does not match")
            compiled = CompiledObject.from_json(payload)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("compile cache: ignoring the damaged entry %s (%s); compiling", path, exc)
            self.discard(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used last: kept longest
        return compiled

    def put(self, key: str, compiled: CompiledObject) -> None:
        """Store an entry (atomically: a reader sees all of it or none), then forget the oldest beyond `keep`.
        A folder that cannot be written costs the next start a compilation, nothing more."""
        payload = compiled.to_json()
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".writing-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(temp, self.path(key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError as exc:
            log.warning("compile cache: cannot store in %s (%s)", self.folder, exc)
            return
        self.prune()

    def discard(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self.path(key).unlink()

    def entries(self) -> list[Path]:
        """The entries, used last first."""
        found = []
        for path in self.folder.glob("*.bpfobj"):
            with contextlib.suppress(OSError):
                found.append((path.stat().st_mtime_ns, path))
        return [path for _mtime, path in sorted(found, reverse=True)]

    def prune(self) -> None:
        """Keep the `keep` entries used last; remove the rest, and temporary files a killed writer left."""
        for path in self.entries()[self.keep :]:
            with contextlib.suppress(OSError):
                path.unlink()
        for temp in self.folder.glob(".writing-*"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < time.time() - 600:  # older than any write in progress
                    temp.unlink()


def _writable_by_others(what: Path | int) -> bool:
    """Whether someone other than this process's user could have written it: an entry becomes programs in the
    kernel, so one that anybody else could have put there is never loaded."""
    stat = os.stat(what)
    return stat.st_uid != os.geteuid() or bool(stat.st_mode & 0o022)


def _toolchain() -> bytes:
    """bcc's version and its library (a rebuilt libbcc, with other LLVM or headers, is another compiler)."""
    library = Path(lib._name)
    try:
        stat = library.resolve().stat()
        identity = f"{library.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        identity = str(library)
    return f"bcc {BCC_VERSION} {identity}".encode()


@functools.cache
def _kernel_digest() -> bytes:
    """The running kernel: its release and build, and its BTF (the offsets compiled in come from it)."""
    from flowscope.observer.datapath.btf import VMLINUX  # here: the compile worker never needs btf's numpy

    uname = os.uname()
    h = hashlib.sha256(f"{uname.release}\0{uname.version}\0{uname.machine}".encode())
    with contextlib.suppress(OSError):
        h.update(VMLINUX.read_bytes())
    return h.digest()
