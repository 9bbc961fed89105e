"""What the datapath pins in bpffs, and removing it again.

The tcx links of the entry programs (links/, see tc.py) and the tail-call array are pinned. A link lives as
long as a pin holds it, so a killed agent's entry programs stay on their hooks (its policy is still enforced).
The kernel empties a program array once no file descriptor or pin holds it (that breaks reference cycles), so
without its pin those programs would find every tail-call slot empty and drop every packet as MISSED_TAIL_CALL.
Pinned, they keep passing packets (their events go to a ring buffer nobody reads, counted as lost) until the
next agent reclaims them. An observer that dies must never take the network with it.

The conntrack tables are pinned too, in conntrack/, and outlive every agent: a stop or a kill -9 leaves them for
the next agent to continue (ct_pins.py). `release` is what an agent's stop and the next start's reclaim remove
(everything else); `remove`, the whole folder, is for `flowscope agent --uninstall` and `flowscope lab down`.

Pins live in /sys/fs/bpf/flowscope/netns-<inode>/, one folder per network namespace (one agent each). A folder
whose namespace is gone (a lab removed while its agent lay dead) is swept by the next agent anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

BPFFS = Path("/sys/fs/bpf")
PIN_ROOT = BPFFS / "flowscope"
_PREFIX = "netns-"
KEPT = "conntrack"  # what outlives an agent, in its folder (ct_pins.py)


def netns_inode() -> int:
    """The calling thread's network namespace (threads can be moved alone with setns)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def pin_dir() -> Path:
    """This network namespace's pin folder."""
    return PIN_ROOT / f"{_PREFIX}{netns_inode()}"


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf if nothing is mounted there (it is not mounted at boot on this machine)."""
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(line.split()[1:3] == [str(BPFFS), "bpf"] for line in mounts if line):
        return
    subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], check=True, capture_output=True)


def release(folder: Path) -> None:
    """Remove what an agent pinned for its own run (links, the tail-call array), keeping the conntrack tables,
    which the next agent continues (ct_pins.py); the folder stays while they do."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == KEPT:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only when nothing is kept
        folder.rmdir()
        PIN_ROOT.rmdir()


def remove(folder: Path) -> bool:
    """Remove a pin folder and what is pinned in it, and PIN_ROOT with the last one; whether there was one."""
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # only when empty: another namespace's agent may still have a folder
        PIN_ROOT.rmdir()
    return True


def live_netns_inodes() -> set[int]:
    """Inodes of every network namespace that still exists: some process is in it, or it is named."""
    inodes: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                inodes.add(os.stat(entry / "ns" / "net").st_ino)
            except OSError:
                continue
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for entry in netns_dir.iterdir():
            try:
                inodes.add(os.stat(entry).st_ino)
            except OSError:
                continue
    return inodes


def sweep_stale() -> int:
    """Remove the pin folders of network namespaces that no longer exist; how many."""
    if not PIN_ROOT.is_dir():
        return 0
    live = live_netns_inodes()
    removed = 0
    for folder in PIN_ROOT.iterdir():
        inode = folder.name.removeprefix(_PREFIX)
        if folder.name.startswith(_PREFIX) and inode.isdigit() and int(inode) not in live and remove(folder):
            log.info("removed the pins of a network namespace that is gone: %s", folder)
            removed += 1
    return removed
