"""Long-running processes of a lab (servers, the traffic generator, agents): start, watch, stop.

A daemon is started in its own session with no terminal and no pipes back to whoever started it, so it
outlives `flowscope lab up`, and its output goes to a log file. It is remembered by pid and the pid's start
time: a later `lab down`, in another process, stops exactly that process and never a stranger that was given
the same pid after ours died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowscope.lab.netns import exec_argv

# Popen objects of daemons this process started, so their exit is reaped (no zombies that look alive) and
# Python does not warn about children it forgot.
_children: dict[int, subprocess.Popen[bytes]] = {}


class DaemonError(RuntimeError):
    """A daemon exited or did not become ready."""


@dataclass(frozen=True)
class Daemon:
    role: str
    netns: str
    pid: int
    start_time: int  # clock ticks after boot (/proc/<pid>/stat field 22)
    argv: list[str]
    log: str

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log: enough for a traceback or a usage message, which say why it failed."""
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(role: str, netns: str, argv: Sequence[str], log: Path, host_mounts: bool = False) -> Daemon:
    """Start argv inside a namespace (the root one when netns is "") as a daemon writing to log (see
    netns.exec_argv for host_mounts)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            exec_argv(netns, argv, host_mounts) if netns else list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
    _children[proc.pid] = proc
    return Daemon(role, netns, proc.pid, _start_time(proc.pid) or 0, list(argv), str(log))


def _start_time(pid: int) -> int | None:
    """When a process started, or None when there is no such (living) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces; skip past it
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(daemon: Daemon) -> bool:
    proc = _children.get(daemon.pid)
    if proc is not None and proc.poll() is not None:
        return False
    return _start_time(daemon.pid) == daemon.start_time


def stop(daemons: Iterable[Daemon], grace: float = 3.0) -> None:
    """SIGTERM each daemon's process group, wait up to `grace` seconds, then SIGKILL what is left."""
    daemons = list(daemons)
    running = [d for d in daemons if is_alive(d)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for daemon in running:
            _signal_group(daemon.pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 1.0)
        while running and time.monotonic() < deadline:
            running = [d for d in running if is_alive(d)]
            time.sleep(0.02)
        if not running:
            break
    for daemon in daemons:
        _children.pop(daemon.pid, None)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the daemon's session (it leads its own), so children it started go too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_listening(daemon: Daemon, ports: Iterable[tuple[str, int]], timeout: float = 10.0) -> None:
    """Wait until the daemon's namespace has sockets bound to every (protocol, port), e.g. ("tcp", 80).

    The daemon's /proc/<pid>/net lists the sockets of its namespace, so no probe traffic is needed (and none
    shows up in the flows).
    """
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(daemon):
            raise DaemonError(f"{daemon.role} in {daemon.netns} exited:\n{daemon.log_tail()}")
        missing = wanted - _bound(daemon.pid)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise DaemonError(f"{daemon.role} in {daemon.netns} is not listening on {sorted(missing)}")
        time.sleep(0.02)


_TCP_LISTEN = "0A"


def _bound(pid: int) -> set[tuple[str, int]]:
    """(protocol, port) of the TCP sockets listening and the UDP sockets bound in a process's namespace."""
    found: set[tuple[str, int]] = set()
    for protocol in ("tcp", "udp"):
        for table in (protocol, f"{protocol}6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if protocol == "udp" or fields[3] == _TCP_LISTEN:
                    found.add((protocol, int(fields[1].rsplit(":", 1)[1], 16)))
    return found
