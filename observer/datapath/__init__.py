"""The loader: compiles and loads the datapath (bpf/), attaches it to tc hooks, fills its maps and reads its
events.

    reclaim()  # first: remove the links and pins a killed predecessor left in this network namespace
    with Datapath(DatapathConfig(caplen=128), pin_dir=pins.pin_dir()) as dp:
        dp.attach_device("eth0")
        dp.attach_endpoint("lxc1001", ep_id=1001, identity=ep.identity)
        dp.replace_ipcache({"10.200.1.11/32": (ep.identity, 1001), "10.77.0.1/32": 1})
        batch = dp.reader().read_batch(0.1)  # numpy array of observer.events.event_dtype(128)
        lost = dp.lost_counts()  # per CPU, cumulative
        dp.update_config(aggregation=3, report_interval_ms=5000, report_flags=0x07)  # live, no reload
        dp.conntrack.sweep(interval_ns=5 * 10**9)  # report what quiet connections left unreported
        dp.policy.query("10.200.1.11", "10.200.1.12", 6, 9000)  # the datapath's own policy answer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowscope.observer.datapath import pins
    from flowscope.observer.datapath.c_source import DatapathConfig
    from flowscope.observer.datapath.loader import Datapath, reclaim, uninstall
    from flowscope.observer.datapath.maps import DatapathMaps, IpcacheEntry, RuntimeConfig
    from flowscope.observer.datapath.ringbuf import RingReader
    from flowscope.observer.datapath.tc import DEVICE_HOOKS, ENDPOINT_HOOKS, Hook, TcLink

# Where each name lives. Imported when first asked for, not with the package: a module of the package that
# needs none of them (the compile worker, a child process: compile_worker.py) does not pay for the loader's
# imports (numpy and the rest of the datapath, ~0.15 s).
_HOMES = {
    "pins": "pins",
    "DatapathConfig": "c_source",
    "Datapath": "loader",
    "reclaim": "loader",
    "uninstall": "loader",
    "DatapathMaps": "maps",
    "IpcacheEntry": "maps",
    "RuntimeConfig": "maps",
    "RingReader": "ringbuf",
    "DEVICE_HOOKS": "tc",
    "ENDPOINT_HOOKS": "tc",
    "Hook": "tc",
    "TcLink": "tc",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{home}")
    return module if name == home else getattr(module, name)


__all__ = [
    "DEVICE_HOOKS",
    "ENDPOINT_HOOKS",
    "Datapath",
    "DatapathConfig",
    "DatapathMaps",
    "Hook",
    "IpcacheEntry",
    "RingReader",
    "RuntimeConfig",
    "TcLink",
    "pins",
    "reclaim",
    "uninstall",
]
