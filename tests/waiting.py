"""Waiting for a condition, never for a fixed time: the suite must pass on a loaded machine too."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `condition` came true within `timeout` seconds (asked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Fail the test unless `condition` comes true within `timeout` seconds."""
    assert eventually(condition, timeout), "timed out"


def polled(ask: Callable[[], T], done: Callable[[T], bool], timeout: float = 5.0, every: float = 0.1) -> T:
    """`ask()`'s first answer that `done` accepts, asked every `every` seconds; its last answer once `timeout`
    seconds passed, for the test to assert on (a failure then shows what there was)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def stopped(process: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, up to `grace` seconds for the process to finish what it holds (a daemon's sockets, files and
    programs), then SIGKILL: a test leaves nothing running whatever state the process was in."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
