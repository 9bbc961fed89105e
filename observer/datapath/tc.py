"""Attaching programs to a device's tc hooks through tcx links, and finding what a killed agent left.

tcx (Linux 6.6) runs a device's programs straight from the ingress and egress paths; the older clsact qdisc
with a cls_bpf filter went through the qdisc's classifier chain first, which on this machine cost about 7% of a
64-byte UDP flood with a program that does nothing, against about 1% for the same program on tcx
(bench/paired_bench.py's method; bench/RESULTS.md).

A link holds the program on its hook for as long as something holds the link: an fd of this process, and,
when a pin folder is given, a pin there (`links/<ifindex>-<hook>`). With the pin, a killed agent's programs
stay attached and keep passing packets (observer/datapath/pins.py); the next agent's reclaim takes them off
by removing those pins. Everything works in the network namespace of the thread that attaches.

`python -m flowscope.observer.datapath` lists the tcx programs on every device of its network namespace with
main() below (bpftool 7.1, Debian 12's, does not show tcx).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from flowscope.observer.datapath.bpfsys import (
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    link_detach,
    link_update,
    obj_get,
    obj_pin,
    prog_info_by_id,
    prog_query,
    tcx_link_create,
)

LINKS = "links"  # the folder of link pins inside a pin folder


class Hook(enum.Enum):
    """Where an entry program attaches: (label, C function, tcx attach type)."""

    FROM_CONTAINER = ("from-container", "from_container", BPF_TCX_INGRESS)
    TO_CONTAINER = ("to-container", "to_container", BPF_TCX_EGRESS)
    FROM_NETDEV = ("from-netdev", "from_netdev", BPF_TCX_INGRESS)
    TO_NETDEV = ("to-netdev", "to_netdev", BPF_TCX_EGRESS)
    FROM_OVERLAY = ("from-overlay", "from_overlay", BPF_TCX_INGRESS)
    TO_OVERLAY = ("to-overlay", "to_overlay", BPF_TCX_EGRESS)

    def __init__(self, label: str, program: str, attach_type: int) -> None:
        self.label = label
        self.program = program
        self.attach_type = attach_type

    @property
    def direction(self) -> str:
        return "ingress" if self.attach_type == BPF_TCX_INGRESS else "egress"

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
OVERLAY_HOOKS = (Hook.FROM_OVERLAY, Hook.TO_OVERLAY)
ENTRY_PROGRAMS = frozenset(hook.program for hook in Hook)


@dataclass(frozen=True)
class TcLink:
    """One of our links: the program of `hook` on device `ifindex`."""

    ifindex: int
    hook: Hook
    fd: int
    pin: Path | None


class TcAttachments:
    """The links this agent made, pinned in `pin_dir`/links when a pin folder is given."""

    def __init__(self, pin_dir: Path | None = None) -> None:
        self._links: dict[tuple[int, Hook], TcLink] = {}
        self._names: dict[str, int] = {}  # the ifindex each device name had when we attached to it
        self._pin_dir = pin_dir / LINKS if pin_dir is not None else None

    @staticmethod
    def ifindex(interface: str | int) -> int:
        """The index of a device of this namespace; OSError(ENODEV) when there is none of that name."""
        if isinstance(interface, int):
            return interface
        try:
            return socket.if_nametoindex(interface)
        except OSError:
            raise OSError(errno.ENODEV, f"no network interface {interface!r} in this network namespace") from None

    def attached(self) -> list[TcLink]:
        return list(self._links.values())

    def attach(self, interface: str | int, hook: Hook, prog_fd: int) -> TcLink:
        """Put the program on the hook; on a hook we hold already, swap it in atomically (no gap).

        Errors (the device vanished, say) come out as OSError with the kernel's errno.
        """
        ifindex = self.ifindex(interface)
        if isinstance(interface, str):
            self._names[interface] = ifindex
        held = self._links.get((ifindex, hook))
        if held is not None:
            link_update(held.fd, prog_fd)
            return held
        try:
            fd = tcx_link_create(prog_fd, ifindex, hook.attach_type)
        except OSError as exc:
            raise OSError(exc.errno, f"attaching {hook.label} to {interface}: {os.strerror(exc.errno or 0)}") from exc
        pin = None
        if self._pin_dir is not None:
            self._pin_dir.mkdir(parents=True, exist_ok=True)
            pin = self._pin_dir / f"{ifindex}-{hook.label}"
            pin.unlink(missing_ok=True)  # a device's index can come back after its device went
            obj_pin(fd, str(pin))
        link = TcLink(ifindex, hook, fd, pin)
        self._links[(ifindex, hook)] = link
        return link

    def detach(self, interface: str | int, hooks: tuple[Hook, ...] | None = None) -> None:
        """Take our programs off the device (all hooks, or those given); a vanished device is no error.

        A name means the device we attached under that name (gone, maybe) and the one it names now.
        """
        indexes = set()
        if isinstance(interface, int):
            indexes.add(interface)
        else:
            if interface in self._names:
                indexes.add(self._names.pop(interface))
            with contextlib.suppress(OSError):
                indexes.add(self.ifindex(interface))
        for key in [k for k in self._links if k[0] in indexes and (hooks is None or k[1] in hooks)]:
            _release(self._links.pop(key))

    def detach_all(self) -> None:
        for link in self._links.values():
            _release(link)
        self._links.clear()
        self._names.clear()

    def close(self) -> None:
        self.detach_all()


def _release(link: TcLink) -> None:
    """Take the program off its hook now, then drop our hold on the link."""
    try:
        link_detach(link.fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENOENT):  # the device went first
            raise
    finally:
        os.close(link.fd)
        if link.pin is not None:
            link.pin.unlink(missing_ok=True)


def reclaim_links(pin_dir: Path) -> int:
    """Take off the programs a killed agent left pinned in `pin_dir`; how many.

    Each link is detached first (BPF_LINK_DETACH takes the program off its hook before returning), then its pin
    removed: removing the last pin alone releases the link only once the kernel gets round to freeing it, so the
    program could still be on the hook when this returns.
    """
    folder = pin_dir / LINKS
    if not folder.is_dir():
        return 0
    removed = 0
    for pin in folder.iterdir():
        with contextlib.suppress(OSError):  # not a link any more: the pin goes all the same
            fd = obj_get(str(pin))
            try:
                link_detach(fd)
            finally:
                os.close(fd)
        pin.unlink(missing_ok=True)
        removed += 1
    folder.rmdir()
    return removed


# --- what is attached (tests, benchmarks, a person) ---


@dataclass(frozen=True)
class Attached:
    device: str
    direction: str  # "ingress" or "egress"
    prog_id: int
    name: str  # the program's name (its C function's, cut to 15 characters)


def attached_programs() -> list[Attached]:
    """Every program on a tcx hook of a device of this network namespace."""
    found = []
    for ifindex, device in socket.if_nameindex():
        for direction, attach_type in (("ingress", BPF_TCX_INGRESS), ("egress", BPF_TCX_EGRESS)):
            for prog_id in prog_query(ifindex, attach_type):
                found.append(Attached(device, direction, prog_id, prog_info_by_id(prog_id).name))
    return found


def main() -> int:
    for a in attached_programs():
        print(f"{a.device} {a.direction} id {a.prog_id} name {a.name}")
    return 0
