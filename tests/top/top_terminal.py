"""`flowscope top` in a pseudo-terminal of a fixed size: keys typed in, the screen read back as plain text,
and the terminal's settings compared with what they were before it started."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable

from cli_runner import ROOT, flowscope_command

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
HOME = "\x1b[H"
LEAVE_ALTERNATE_SCREEN, SHOW_CURSOR = "\x1b[?1049l", "\x1b[?25h"


class Terminal:
    """`flowscope top ARGS` (or another full-screen command: `map`) in a pseudo-terminal of `rows` x `cols`."""

    def __init__(
        self, args: list[str], env: dict[str, str], rows: int = 30, cols: int = 150, command: str = "top"
    ) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.settings = termios.tcgetattr(self.slave)
        self.process = subprocess.Popen(
            [*flowscope_command(), command, *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.output = bytearray()

    def pump(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    return

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def screen(self) -> str:
        """The last frame drawn, as plain text."""
        return _ESCAPES.sub("", self.text.rsplit(HOME, 1)[-1])

    def aside(self) -> str:
        """What was written on the ordinary screen since the full-screen view last left it, as plain text."""
        return _ESCAPES.sub("", self.text.rsplit(LEAVE_ALTERNATE_SCREEN, 1)[-1])

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.1)
            if check(self.screen()):
                return self.screen()
        raise AssertionError(f"never saw {what}; last screen:\n{self.screen()}")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def exit_code(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.pump(0.05)
        self.pump(0.1)
        return self.process.wait(timeout=1)

    def restored(self) -> bool:
        return termios.tcgetattr(self.slave) == self.settings

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        os.close(self.slave)
