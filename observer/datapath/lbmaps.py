"""The service maps (`lb_frontends`, `lb_backends`, `lb_reverse`) as the agent writes and reads them.

The agent hands over a plain list of frontends (a ClusterIP or node address, port and protocol, and the
backends behind it); `replace` makes the datapath's tables exactly that while packets flow. A packet must never
see half a change, so every frontend's backend set is written into the generation of slots it does not use,
then the frontend's entry is switched to it in one update, then the old slots go (bpf/include/flowscope/lb.h).
The runtime config's `services_active` is set while any frontend exists: without one, packets skip the
load-balancing stage altogether.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowscope.observer.datapath.c_source import header_define

FRONTENDS_MAX = header_define("lb.h", "FS_LB_FRONTENDS_MAX")
BACKENDS_MAX = header_define("lb.h", "FS_LB_BACKENDS_MAX")
_NODEPORT = header_define("lb.h", "FS_LB_NODEPORT")
_F_GEN = header_define("lb.h", "FS_LB_F_GEN")
_SLOT_GEN = header_define("lb.h", "FS_LB_SLOT_GEN")

TCP, UDP, SCTP = 6, 17, 132
PROTOCOLS = (TCP, UDP, SCTP)


@dataclass(frozen=True)
class Backend:
    address: str
    port: int


@dataclass(frozen=True)
class Frontend:
    id: int  # 1..65535, stable while the frontend exists (the agent assigns it; carried in events)
    address: str  # a ClusterIP, or a node address for NodePort
    port: int
    protocol: int  # 6 / 17 / 132
    nodeport: bool  # looked up at from-netdev of the node owning `address`, not at from-container
    backends: tuple[Backend, ...]  # may be empty: packets to it drop with SERVICE_BACKEND_NOT_FOUND


@dataclass(frozen=True)
class ReverseEntry:
    """A translated connection the datapath remembers for its replies: the client talks to `frontend_address`:
    `frontend_port` (frontend `frontend_id`), the packets go to `backend`."""

    client: str
    client_port: int
    backend: Backend
    protocol: int
    frontend_address: str
    frontend_port: int
    frontend_id: int


@dataclass(frozen=True)
class NodePortEntry:
    """A NodePort connection the datapath remembers for its replies (bpf/include/flowscope/nodeport.h): the client
    asked this node's `frontend_address`:`frontend_port`, the packets go to `backend`, from the client itself or,
    when `snat` (a backend on another node), from `source`:`source_port`, this node's address."""

    client: str
    client_port: int
    backend: Backend
    source: str
    source_port: int
    protocol: int
    frontend_address: str
    frontend_port: int
    frontend_id: int
    snat: bool


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def _packed(address: str) -> bytes:
    """An address as the datapath keeps it: IPv6 in 16 bytes, IPv4 in the first 4."""
    return ipaddress.ip_address(address).packed.ljust(16, b"\0")


def _address(raw: Any, family: int) -> str:
    data = bytes(raw)
    return str(ipaddress.ip_address(data if family == 6 else data[:4]))


def validate(frontends: Sequence[Frontend]) -> None:
    """Raise ValueError naming the first frontend the datapath cannot serve."""
    if len(frontends) > FRONTENDS_MAX:
        raise ValueError(f"{len(frontends)} service frontends: at most {FRONTENDS_MAX}")
    ids: set[int] = set()
    keys: set[tuple[str, int, int, bool]] = set()
    for fe in frontends:
        where = f"frontend {fe.id} ({fe.address}:{fe.port}/{fe.protocol})"
        if not 1 <= fe.id <= 0xFFFF or fe.id in ids:
            raise ValueError(f"{where}: the id must be 1..65535 and unique")
        key = (str(ipaddress.ip_address(fe.address)), fe.port, fe.protocol, fe.nodeport)
        if key in keys:
            raise ValueError(f"{where}: given twice")
        ids.add(fe.id)
        keys.add(key)
        if fe.protocol not in PROTOCOLS:
            raise ValueError(f"{where}: the protocol must be TCP (6), UDP (17) or SCTP (132)")
        if len(fe.backends) > BACKENDS_MAX:
            raise ValueError(f"{where}: {len(fe.backends)} backends, at most {BACKENDS_MAX}")
        for backend in (Backend(fe.address, fe.port), *fe.backends):
            if not 1 <= backend.port <= 0xFFFF:
                raise ValueError(f"{where}: port {backend.port} is not 1..65535")
            if _family(backend.address) != _family(fe.address):
                raise ValueError(f"{where}: backend {backend.address} is not of the frontend's IP family")
            if fe.protocol == SCTP and backend.port != fe.port:
                raise ValueError(f"{where}: SCTP ports are not translated (its checksum covers them)")


class LbMaps:
    """The agent's handle on the service maps of one loaded datapath."""

    def __init__(self, bpf: Any, update_config: Callable[..., Any]) -> None:
        self._frontends = bpf[b"lb_frontends"]
        self._backends = bpf[b"lb_backends"]
        self._reverse = bpf[b"lb_reverse"]
        self._np_reverse = bpf[b"np_reverse"]
        self._np_snat = bpf[b"np_snat"]
        self._update_config = update_config  # DatapathMaps.update_config: the knobs other threads change too
        self._lock = threading.Lock()

    def replace(self, frontends: Sequence[Frontend]) -> None:
        """Make the tables exactly `frontends`, safely while packets flow (see the module's docstring)."""
        validate(frontends)
        with self._lock:
            if frontends:
                self._update_config(services_active=1)
            current = {self._key_tuple(k): (v.id, v.count, v.flags) for k, v in self._frontends.items()}
            slots = self._slots()
            gens_in_use = {fid: flags & _F_GEN for fid, _, flags in current.values()}
            wanted = {}
            for fe in frontends:
                key = (
                    _packed(fe.address),
                    fe.port,
                    fe.protocol,
                    _family(fe.address) | (_NODEPORT if fe.nodeport else 0),
                )
                wanted[key] = fe
                now = current.get(key)
                if now is not None and now[0] == fe.id and slots.get((fe.id, now[2] & _F_GEN)) == fe.backends:
                    continue  # unchanged
                gen = gens_in_use.get(fe.id, 1) ^ 1
                for slot, backend in enumerate(fe.backends):
                    self._write_backend(fe.id, slot | (_SLOT_GEN if gen else 0), backend)
                value = self._frontends.Leaf()
                value.id, value.count, value.flags = fe.id, len(fe.backends), gen
                self._frontends[self._key(key)] = value
                gens_in_use[fe.id] = gen
            for key in current.keys() - wanted.keys():
                with contextlib.suppress(KeyError):
                    del self._frontends[self._key(key)]
            live = {(fe.id, gens_in_use[fe.id]) for fe in wanted.values()}
            for bkey in list(self._backends.keys()):
                if (bkey.id, 1 if bkey.slot & _SLOT_GEN else 0) not in live:
                    with contextlib.suppress(KeyError):
                        del self._backends[bkey]
            self._forget_reverse(wanted.values())
            if not frontends:
                self._update_config(services_active=0)

    def frontends(self) -> list[Frontend]:
        """What the tables hold, as `replace` was given it (in id order)."""
        slots = self._slots()
        out = []
        for key, value in self._frontends.items():
            family = key.family & ~_NODEPORT
            out.append(
                Frontend(
                    id=value.id,
                    address=_address(key.addr, family),
                    port=key.port,
                    protocol=key.proto,
                    nodeport=bool(key.family & _NODEPORT),
                    backends=slots.get((value.id, value.flags & _F_GEN), ())[: value.count],
                )
            )
        return sorted(out, key=lambda fe: fe.id)

    def reverse_entries(self) -> list[ReverseEntry]:
        """The translated connections the datapath remembers (an LRU: the least recently used go first)."""
        out = []
        for key, value in self._reverse.items():
            family = key.family
            out.append(
                ReverseEntry(
                    client=_address(key.client, family),
                    client_port=key.client_port,
                    backend=Backend(_address(key.backend, family), key.backend_port),
                    protocol=key.proto,
                    frontend_address=_address(value.addr, family),
                    frontend_port=value.port,
                    frontend_id=value.id,
                )
            )
        return out

    def nodeport_entries(self) -> list[NodePortEntry]:
        """The NodePort connections the datapath remembers (an LRU: the least recently used go first)."""
        out = []
        for key, value in self._np_reverse.items():
            family = key.family
            out.append(
                NodePortEntry(
                    client=_address(value.client, family),
                    client_port=value.client_port,
                    backend=Backend(_address(key.backend, family), key.backend_port),
                    source=_address(key.peer, family),
                    source_port=key.peer_port,
                    protocol=key.proto,
                    frontend_address=_address(value.frontend, family),
                    frontend_port=value.frontend_port,
                    frontend_id=value.id,
                    snat=bool(value.snat),
                )
            )
        return out

    def _forget_reverse(self, frontends: Any) -> None:
        """Replies of connections to a frontend that is gone (or whose id now names another) are not
        translated back any more, nor are NodePort connections' SNAT ports kept."""
        alive = {(fe.id, _packed(fe.address), fe.port) for fe in frontends}
        for key, value in list(self._reverse.items()):
            if (value.id, bytes(value.addr), value.port) not in alive:
                with contextlib.suppress(KeyError):
                    del self._reverse[key]
        for np_key, np_value in list(self._np_reverse.items()):
            if (np_value.id, bytes(np_value.frontend), np_value.frontend_port) not in alive:
                with contextlib.suppress(KeyError):
                    del self._np_reverse[np_key]
        asked = {(_packed(fe.address), fe.port) for fe in frontends if fe.nodeport}
        for conn in list(self._np_snat.keys()):
            if (bytes(conn.frontend), conn.frontend_port) not in asked:
                with contextlib.suppress(KeyError):
                    del self._np_snat[conn]

    def _slots(self) -> dict[tuple[int, int], tuple[Backend, ...]]:
        """(frontend id, generation) -> its backends in slot order."""
        found: dict[tuple[int, int], dict[int, Backend]] = {}
        for key, value in self._backends.items():
            gen = 1 if key.slot & _SLOT_GEN else 0
            found.setdefault((key.id, gen), {})[key.slot & ~_SLOT_GEN] = Backend(
                _address(value.addr, value.family), value.port
            )
        return {k: tuple(v[s] for s in sorted(v)) for k, v in found.items()}

    def _write_backend(self, frontend_id: int, slot: int, backend: Backend) -> None:
        key = self._backends.Key()
        key.id, key.slot = frontend_id, slot
        value = self._backends.Leaf()
        ctypes.memmove(value.addr, _packed(backend.address), 16)
        value.port, value.family = backend.port, _family(backend.address)
        self._backends[key] = value

    def _key(self, key: tuple[bytes, int, int, int]) -> Any:
        ckey = self._frontends.Key()
        ctypes.memmove(ckey.addr, key[0], 16)
        ckey.port, ckey.proto, ckey.family = key[1], key[2], key[3]
        return ckey

    @staticmethod
    def _key_tuple(ckey: Any) -> tuple[bytes, int, int, int]:
        return bytes(ckey.addr), ckey.port, ckey.proto, ckey.family
