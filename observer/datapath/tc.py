"""Attaching programs to tc hooks with pyroute2, and finding them again after a crash.

Each program goes in a cls_bpf direct-action filter under the device's clsact qdisc, NAMED "flowscope:<hook>":
the name is how a later start finds what a killed agent left behind (reclaim), and how detach removes exactly
ours and nothing else. Everything works in the network namespace this object's netlink socket was opened in:
that of the thread that first uses it (the agent runs inside the node's namespace).
"""

from __future__ import annotations

import contextlib
import enum
import errno
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

FILTER_PREFIX = "flowscope:"
TC_H_INGRESS = 0xFFFFFFF2  # clsact's ingress hook, "ffff:fff2"
TC_H_EGRESS = 0xFFFFFFF3  # clsact's egress hook, "ffff:fff3"
_GONE = (errno.ENODEV, errno.ENOENT, errno.EINVAL)  # the device (or the filter) went away meanwhile


class Hook(enum.Enum):
    """Where an entry program attaches: (name on the filter, C function, tc hook)."""

    FROM_CONTAINER = ("from-container", "from_container", TC_H_INGRESS)
    TO_CONTAINER = ("to-container", "to_container", TC_H_EGRESS)
    FROM_NETDEV = ("from-netdev", "from_netdev", TC_H_INGRESS)
    TO_NETDEV = ("to-netdev", "to_netdev", TC_H_EGRESS)

    def __init__(self, label: str, program: str, parent: int) -> None:
        self.label = label
        self.program = program
        self.parent = parent

    @property
    def filter_name(self) -> str:
        return FILTER_PREFIX + self.label

    @classmethod
    def named(cls, hook: Hook | str) -> Hook:
        """The hook itself, or the one labelled so ("from-container", ...)."""
        if isinstance(hook, Hook):
            return hook
        for member in cls:
            if member.label == hook:
                return member
        raise ValueError(f"no hook {hook!r}: one of {', '.join(m.label for m in cls)}")


ENDPOINT_HOOKS = (Hook.FROM_CONTAINER, Hook.TO_CONTAINER)
DEVICE_HOOKS = (Hook.FROM_NETDEV, Hook.TO_NETDEV)


@dataclass(frozen=True)
class TcFilter:
    """One of our filters, with what netlink needs to replace or delete it."""

    ifindex: int
    parent: int
    info: int  # priority << 16 | protocol
    handle: int
    name: str


def _filters(ipr: IPRoute, ifindex: int, parent: int) -> list[TcFilter]:
    """Our filters (named flowscope:*) on one clsact hook of one device."""
    found = []
    for msg in ipr.get_filters(index=ifindex, parent=parent):
        name = _bpf_name(msg)
        if name.startswith(FILTER_PREFIX):
            found.append(TcFilter(ifindex, parent, msg["info"], msg["handle"], name))
    return found


def _bpf_name(msg: Any) -> str:
    if msg.get_attr("TCA_KIND") != "bpf":
        return ""
    options = msg.get_attr("TCA_OPTIONS")
    return (options.get_attr("TCA_BPF_NAME") or "") if options is not None else ""


def _any_filters(ipr: IPRoute, ifindex: int) -> bool:
    return any(msg["handle"] for parent in (TC_H_INGRESS, TC_H_EGRESS) for msg in ipr.get_filters(ifindex, 0, parent))


def _delete(ipr: IPRoute, tcf: TcFilter) -> None:
    try:
        ipr.tc("del-filter", "bpf", tcf.ifindex, tcf.handle, parent=tcf.parent, info=tcf.info)
    except NetlinkError as exc:
        if exc.code not in _GONE:
            raise


class TcAttachments:
    """The filters this agent attached, and the clsact qdiscs it had to create for them."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._attached: dict[tuple[int, Hook], TcFilter] = {}
        self._created_clsact: set[int] = set()
        self._names: dict[str, int] = {}  # the ifindex each device name had when we attached to it

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def ifindex(self, interface: str | int) -> int:
        """The index of a device of this namespace; OSError(ENODEV) when there is none of that name."""
        if isinstance(interface, int):
            return interface
        found = self.ipr.link_lookup(ifname=interface)
        if not found:
            raise OSError(errno.ENODEV, f"no network interface {interface!r} in this network namespace")
        return int(found[0])

    def attached(self) -> list[TcFilter]:
        return list(self._attached.values())

    def attach(self, interface: str | int, hook: Hook, prog_fd: int) -> TcFilter:
        """Put the program on the hook, replacing a filter of ours already there (atomically: no gap).

        Netlink errors (the device vanished, say) come out as OSError with the kernel's errno.
        """
        try:
            ifindex = self.ifindex(interface)
            if isinstance(interface, str):
                self._names[interface] = ifindex
            return self._attach(ifindex, hook, prog_fd)
        except NetlinkError as exc:
            raise OSError(exc.code, f"attaching {hook.filter_name} to {interface}: {exc}") from exc

    def _attach(self, ifindex: int, hook: Hook, prog_fd: int) -> TcFilter:
        self._ensure_clsact(ifindex)
        existing = [f for f in _filters(self.ipr, ifindex, hook.parent) if f.name == hook.filter_name]
        bpf_args = {"fd": prog_fd, "name": hook.filter_name, "classid": 1, "direct_action": True}
        if existing:
            first = existing[0]
            self.ipr.tc(
                "replace-filter",
                "bpf",
                ifindex,
                first.handle,
                parent=hook.parent,
                info=first.info,
                **bpf_args,
            )
            for stale in existing[1:]:
                _delete(self.ipr, stale)
            tcf = first
        else:
            self.ipr.tc("add-filter", "bpf", ifindex, 1, parent=hook.parent, **bpf_args)
            tcf = next(f for f in _filters(self.ipr, ifindex, hook.parent) if f.name == hook.filter_name)
        self._attached[(ifindex, hook)] = tcf
        return tcf

    def _ensure_clsact(self, ifindex: int) -> None:
        if any(q.get_attr("TCA_KIND") == "clsact" for q in self.ipr.get_qdiscs(ifindex)):
            return
        try:
            self.ipr.tc("add", "clsact", ifindex)
            self._created_clsact.add(ifindex)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def detach(self, interface: str | int, hooks: tuple[Hook, ...] | None = None) -> None:
        """Remove our filters from the device (all hooks, or those given); a vanished device is no error.

        A name means the device we attached under that name (gone, maybe) and the one it names now.
        """
        if isinstance(interface, int):
            self._detach(interface, hooks)
            return
        indexes = {self._names.pop(interface)} if interface in self._names else set()
        with contextlib.suppress(OSError):
            indexes.add(self.ifindex(interface))
        for ifindex in indexes:
            self._detach(ifindex, hooks)

    def _detach(self, ifindex: int, hooks: tuple[Hook, ...] | None) -> None:
        for key in [k for k in self._attached if k[0] == ifindex and (hooks is None or k[1] in hooks)]:
            _delete(self.ipr, self._attached.pop(key))
        if ifindex in self._created_clsact and not any(k[0] == ifindex for k in self._attached):
            self._created_clsact.discard(ifindex)
            self._remove_clsact_if_empty(ifindex)

    def _remove_clsact_if_empty(self, ifindex: int) -> None:
        try:
            if not _any_filters(self.ipr, ifindex):
                self.ipr.tc("del", "clsact", ifindex)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise

    def detach_all(self) -> None:
        for ifindex in {k[0] for k in self._attached} | self._created_clsact:
            self._detach(ifindex, None)
        self._names.clear()

    def close(self) -> None:
        self.detach_all()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


def reclaim_filters() -> int:
    """Remove every filter named flowscope:* from every device of this network namespace; how many it removed.

    For the start of an agent whose predecessor was killed before it could detach. Once its filters are gone,
    the kernel frees the programs they held. The clsact qdiscs stay: nothing tells whether we made them.
    """
    removed = 0
    with IPRoute() as ipr:
        for link in ipr.get_links():
            for parent in (TC_H_INGRESS, TC_H_EGRESS):
                try:
                    found = _filters(ipr, link["index"], parent)
                except NetlinkError as exc:
                    if exc.code in _GONE:
                        continue
                    raise
                for tcf in found:
                    _delete(ipr, tcf)
                    removed += 1
    return removed
