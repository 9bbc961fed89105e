"""Compiling into the compile cache in a child process, so that the agent never runs clang and LLVM itself.

Why a child: what bcc compiles in a process stays there (clang's and LLVM's heap and code pages: ~25 MiB kept
even after compiler_memory.py hands back what it can), and bcc cannot compile two sources at once in one process
(iovisor/bcc#4500). A child per source compiles with bcc exactly as the agent did, records the result in the
cache and exits, taking the compiler with it; the agent then loads the entry as any warm start does. Started
early (`start`), bpf/kdrop.c and bpf/datapath.c compile side by side while the agent sets up the rest.

The child creates the maps bcc creates while compiling, and they go with it, except the pinned ones (the
conntrack tables): it pins them as bcc does, and the agent opens the pins, as a later agent would. It dies with
the agent (a killed agent leaves no compiler running); an entry it had not finished is never seen (the cache
writes under a temporary name).

    python -m flowscope.observer.datapath.compile_worker < request.json   # exit 0: the entry is in the cache
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
NOT_CACHEABLE = 3  # the child's exit status when bcc's output cannot be cached (the agent compiles itself)
FAILED = 2  # the compilation failed; its stderr says why


@dataclass
class Compiling:
    """A child compiling one source into the cache."""

    key: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, folder: Path, key: str, text: str, cflags: Sequence[str], pins: Mapping[str, Path] | None
    ) -> Compiling:
        """Start the child. It is killed when the thread that started it ends (PR_SET_PDEATHSIG follows the
        thread), so start it from a thread that outlives the wait: the agent's main thread does."""
        request = {
            "parent": os.getpid(),
            "folder": str(folder),
            "key": key,
            "text": text,
            "cflags": list(cflags),
            "pins": {name: str(path) for name, path in (pins or {}).items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(request).encode())
        process.stdin.close()
        return cls(key, process)

    def wait(self) -> bool:
        """Whether the entry was made; False when it cannot be cached. RuntimeError, with the compiler's last
        words, when the compilation failed."""
        assert self.process.stderr is not None
        errors = self.process.stderr.read().decode(errors="replace")
        status = self.process.wait()
        if status == 0:
            return True
        if status == NOT_CACHEABLE:
            return False
        tail = " | ".join(line for line in errors.strip().splitlines()[-6:])
        raise RuntimeError(f"compiling the BPF programs failed (exit status {status}): {tail}")

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def main() -> int:
    from bcc import BPF

    from flowscope.observer.datapath.compile_cache import CompileCache, CompiledObject, NotCacheable

    request = json.load(sys.stdin)
    _die_with(int(request["parent"]))
    try:
        bpf = BPF(text=request["text"].encode(), cflags=request["cflags"])
    except Exception as exc:
        print(exc, file=sys.stderr)
        return FAILED
    try:
        compiled = CompiledObject.of(bpf, {name: Path(path) for name, path in request["pins"].items()})
    except NotCacheable as exc:
        print(exc, file=sys.stderr)
        return NOT_CACHEABLE
    CompileCache(Path(request["folder"])).put(request["key"], compiled)
    return 0


def _die_with(parent: int) -> None:
    """Be killed when the agent that started us ends (a killed agent's compilation has nobody to wait for it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it ended before the line above
        os._exit(FAILED)


if __name__ == "__main__":
    sys.exit(main())
