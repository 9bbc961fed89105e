"""Helpers for lab tests: running the CLI, finding what a lab left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flowscope.lab import netns
from flowscope.lab.topology import owns_netns

PROJECT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`flowscope lab ...`, as a separate process (`python -m cli.lab` until cli/main.py registers it)."""
    return subprocess.run(
        [sys.executable, "-m", "flowscope.cli.lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
        check=False,
    )


def lab_netns(name: str) -> list[str]:
    return [ns for ns in netns.existing() if owns_netns(name, ns)]


def lab_processes(name: str) -> list[int]:
    """Processes whose command line names the lab (its state directory, or `--name <lab>`)."""
    marks = (f"/run/flowscope/labs/{name}/".encode(), f"--name\0{name}\0".encode())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(mark in cmdline for mark in marks):
            found.append(int(entry.name))
    return found


def wait_until_gone(name: str, timeout: float = 3.0) -> list[int]:
    """The lab's processes still there after a short wait (killed processes take a moment to go)."""
    deadline = time.monotonic() + timeout
    while (left := lab_processes(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def assert_nothing_left(name: str) -> None:
    assert lab_netns(name) == []
    assert not Path(f"/run/flowscope/labs/{name}").exists()
    assert wait_until_gone(name) == []


def root_links() -> list[str]:
    """The names of the root namespace's links, to show a lab adds none."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())
