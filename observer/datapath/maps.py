"""What the agent writes into the datapath's maps and reads out of them, in Python terms.

The C layouts live in bpf/include/flowscope/maps.h and config.h; bcc builds matching ctypes types from the
compiled source, so fields are set by name here and a field added on one side only fails loudly.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Prefix = str | IPNetwork | ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_MAPPED = bytes(10) + b"\xff\xff"
_V4_BITS_OFFSET = 96


@dataclass(frozen=True)
class IpcacheEntry:
    """The value of one ipcache prefix."""

    identity: int
    ep_id: int = 0  # the endpoint owning the address, when it lives on this node
    flags: int = 0


FS_EP_F_PRESENT = 0x0001  # struct fs_endpoint.flags: an array slot that holds an endpoint


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime knobs (struct fs_config), changed without recompiling. Zero means the datapath's default:
    capture everything, trace every packet, enforce nothing. Field order is the C struct's."""

    capture_len: int = 0  # packet bytes per event, 1..FS_CAPLEN; 0 = FS_CAPLEN
    policy_rev: int = 0  # revision of the policy in force, its low bit the maps' generation; 0 = no policy
    report_interval_ms: int = 0  # medium and above: a busy connection reports this often; 0 = 5 s
    aggregation: int = 0  # monitor aggregation level, Cilium's numbers (0 none .. 4 maximum)
    report_flags: int = 0  # medium and above: TCP flags whose first sighting each way is reported
    jiffy_ns: int = (
        0  # the kernel's tick in ns; with the offset, the datapath's cheap clock (tick_clock.py); 0 = unknown
    )
    trace_active: int = 0  # a bit per packet-path session slot in use (observer/trace/)
    jiffies_offset_ns: int = 0  # CLOCK_MONOTONIC = jiffies * jiffy_ns + this, mod 2**64
    services_active: int = 0  # 1 while some service frontend exists (lbmaps.py); 0 = packets skip stage_lb
    l7_active: int = 0  # 1 while some port is configured for L7 capture (Datapath.set_l7_ports); 0 = none


# What an ipcache prefix can be given: a full entry, an identity, or (identity, endpoint id).
IpcacheValue = IpcacheEntry | int | tuple[int, int]
IpcacheEntries = Mapping[str, IpcacheValue] | Mapping[IPNetwork, IpcacheValue]


def _entry(value: IpcacheValue) -> IpcacheEntry:
    if isinstance(value, IpcacheEntry):
        return value
    if isinstance(value, int):
        return IpcacheEntry(identity=value)
    identity, ep_id = value
    return IpcacheEntry(identity=identity, ep_id=ep_id)


def _network(prefix: Prefix) -> IPNetwork:
    return ipaddress.ip_network(prefix, strict=False)


def ipcache_key(network: IPNetwork) -> tuple[int, bytes]:
    """(prefixlen over 128 bits, 16 address bytes): IPv4 as ::ffff:a.b.c.d, as the datapath looks it up."""
    if isinstance(network, ipaddress.IPv4Network):
        return network.prefixlen + _V4_BITS_OFFSET, _V4_MAPPED + network.network_address.packed
    return network.prefixlen, network.network_address.packed


def ipcache_network(prefixlen: int, addr: bytes) -> IPNetwork:
    """The network of an ipcache key: back from v4-mapped to IPv4 where it is one."""
    if addr[:12] == _V4_MAPPED and prefixlen >= _V4_BITS_OFFSET:
        return ipaddress.IPv4Network((addr[12:], prefixlen - _V4_BITS_OFFSET))
    return ipaddress.IPv6Network((addr, prefixlen))


class DatapathMaps:
    """The agent's handles on `endpoints`, `ipcache`, `lost` and `config` of one loaded datapath."""

    def __init__(self, bpf: Any) -> None:
        self._endpoints = bpf[b"endpoints"]
        self._endpoints_direct = bpf[b"endpoints_direct"]
        self._direct_size = int(self._endpoints_direct.max_entries)
        self._direct: dict[int, tuple[int, int]] = {}  # what we put in the array (reading it back is 64k syscalls)
        self._ipcache = bpf[b"ipcache"]
        self._lost = bpf[b"lost"]
        self._config = bpf[b"config"]
        self._config_lock = threading.Lock()

    # endpoints: ifindex -> the endpoint behind that host-side interface, in an array slot for an index below
    # the array's size, else in the hash (bpf/include/flowscope/maps.h says why)

    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None:
        table = self._endpoints_direct if ifindex < self._direct_size else self._endpoints
        value = table.Leaf()
        value.ep_id, value.flags, value.identity = ep_id, FS_EP_F_PRESENT, identity
        table[table.Key(ifindex)] = value
        if table is self._endpoints_direct:
            self._direct[ifindex] = (ep_id, identity)

    def remove_endpoint(self, ifindex: int) -> None:
        if ifindex < self._direct_size:
            self._endpoints_direct[self._endpoints_direct.Key(ifindex)] = self._endpoints_direct.Leaf()  # all zero
            self._direct.pop(ifindex, None)
            return
        with contextlib.suppress(KeyError):
            del self._endpoints[self._endpoints.Key(ifindex)]

    def endpoints(self) -> dict[int, tuple[int, int]]:
        """ifindex -> (ep_id, identity)."""
        found = {key.value: (value.ep_id, value.identity) for key, value in self._endpoints.items()}
        return found | self._direct

    # ipcache: address prefix -> identity

    def _ipcache_key(self, prefix: Prefix) -> Any:
        prefixlen, addr = ipcache_key(_network(prefix))
        key = self._ipcache.Key()
        key.prefixlen = prefixlen
        ctypes.memmove(key.addr, addr, len(addr))
        return key

    def ipcache_set(self, prefix: Prefix, value: IpcacheValue) -> None:
        """Map an address or CIDR to an identity (an int, (identity, ep_id), or a full IpcacheEntry)."""
        entry = _entry(value)
        leaf = self._ipcache.Leaf()
        leaf.identity, leaf.ep_id, leaf.flags = entry.identity, entry.ep_id, entry.flags
        self._ipcache[self._ipcache_key(prefix)] = leaf

    def ipcache_delete(self, prefix: Prefix) -> None:
        with contextlib.suppress(KeyError):
            del self._ipcache[self._ipcache_key(prefix)]

    def ipcache_entries(self) -> dict[IPNetwork, IpcacheEntry]:
        return {
            ipcache_network(key.prefixlen, bytes(key.addr)): IpcacheEntry(value.identity, value.ep_id, value.flags)
            for key, value in self._ipcache.items()
        }

    def replace_ipcache(self, entries: IpcacheEntries) -> None:
        """Make the ipcache exactly `entries`: set the new and changed ones first, then delete the departed.

        Lookups in between see either the old or the new identity of a prefix, never a world gap.
        """
        wanted = {_network(prefix): _entry(value) for prefix, value in entries.items()}
        current = self.ipcache_entries()
        for network, entry in wanted.items():
            if current.get(network) != entry:
                self.ipcache_set(network, entry)
        for network in current.keys() - wanted.keys():
            self.ipcache_delete(network)

    # lost: events the datapath could not emit because the ring buffer was full

    def lost_counts(self) -> list[int]:
        """Per CPU, how many events could not be reserved since the datapath was loaded (never reset)."""
        return [int(n) for n in self._lost[self._lost.Key(0)]]

    # config: the runtime knobs

    def write_config(self, config: RuntimeConfig) -> None:
        value = self._config.Leaf()
        c_fields = [name for name, *_ in value._fields_]
        py_fields = [f.name for f in fields(config)]
        if c_fields != py_fields:
            raise RuntimeError(f"struct fs_config has {c_fields}, RuntimeConfig has {py_fields}")
        for name in py_fields:
            setattr(value, name, getattr(config, name))
        self._config[self._config.Key(0)] = value

    def read_config(self) -> RuntimeConfig:
        value = self._config[self._config.Key(0)]
        return RuntimeConfig(**{f.name: getattr(value, f.name) for f in fields(RuntimeConfig)})

    def update_config(self, **changes: int) -> RuntimeConfig:
        """Change some knobs and keep the others: the policy and the aggregation settings are changed from
        different threads, and each must not undo the other's write."""
        with self._config_lock:
            config = replace(self.read_config(), **changes)
            self.write_config(config)
            return config
