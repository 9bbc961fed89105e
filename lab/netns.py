"""Named network namespaces (`ip netns`): create, configure, find what runs inside, remove.

The lab drives iproute2 rather than a netlink library: every step is a command a person can paste into a shell
to reproduce or inspect it, and one `ip -batch` per namespace keeps a whole lab to a few dozen processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class CommandError(RuntimeError):
    """A command that builds the lab failed; carries what it printed."""


def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run a command to completion, raising CommandError with its output when it fails."""
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return done.stdout


def exec_argv(netns: str, argv: Sequence[str], host_mounts: bool = False) -> list[str]:
    """The command line that runs argv inside a namespace.

    `ip netns exec` also gives the command its own /sys for that namespace; with host_mounts, only the network
    namespace changes (nsenter), so the command shares the host's bpffs and tracefs, as the agent must: what it
    pins in /sys/fs/bpf has to outlive it (kill -9) for the datapath to keep working and be reclaimed.
    """
    if host_mounts:
        return ["nsenter", f"--net={NETNS_DIR / netns}", *argv]
    return ["ip", "netns", "exec", netns, *argv]


def existing() -> list[str]:
    """Every named network namespace on the machine."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(entry.name for entry in NETNS_DIR.iterdir())


def add(names: Iterable[str]) -> None:
    run(["ip", "-batch", "-"], stdin="".join(f"netns add {name}\n" for name in names))


def ip_batch(netns: str, commands: Iterable[str]) -> None:
    """Run `ip` commands (without the leading `ip`) in a namespace, one process for all of them."""
    run(["ip", "-n", netns, "-batch", "-"], stdin="".join(f"{command}\n" for command in commands))


def sysctl(netns: str, settings: dict[str, str]) -> None:
    run(exec_argv(netns, ["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in settings.items())]))


def pids_inside(names: Iterable[str]) -> dict[str, list[int]]:
    """The processes running in each namespace, found in one pass over /proc (what `ip netns pids` does)."""
    wanted: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        wanted[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:  # gone, or a zombie whose namespaces are already released
            continue
        owner = wanted.get((st.st_dev, st.st_ino))
        if owner is not None:
            found[owner].append(int(entry.name))
    return found


def remove(names: Iterable[str]) -> None:
    """Kill whatever still runs in the namespaces, then delete them. Missing namespaces are fine."""
    present = [name for name in names if (NETNS_DIR / name).exists()]
    for pids in pids_inside(present).values():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if present:
        # -force keeps going past a namespace someone else removed meanwhile.
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns delete {name}\n" for name in present),
            capture_output=True,
            text=True,
            check=False,
        )


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into a named network namespace for the block, and back after it (setns moves
    one thread only): for netlink and bpf(2) calls that act on the namespace the caller is in."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
