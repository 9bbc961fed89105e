"""Shared test set-up: BPF availability, and sweeping what killed runs left behind.

Tests marked `bpf` load real programs and build real namespaces. Where that is impossible (not root, no BPF)
they are skipped on a developer machine but fail under CI=true: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest


@cache
def bpf_unavailable_reason() -> str | None:
    """Why real BPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    try:
        from bcc import BPF  # type: ignore[import-not-found]
    except ImportError as exc:
        return f"bcc does not import: {exc}"
    try:
        prog = BPF(text=b"int f(struct __sk_buff *skb) { return 0; }")
        prog.load_func(b"f", BPF.SCHED_CLS)
        prog.cleanup()
    except Exception as exc:
        return f"cannot load a BPF program: {exc}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    hypothesis_draws_on_our_code_only()


def hypothesis_draws_on_our_code_only() -> None:
    r"""Hypothesis mixes constants of the code under test into the values it generates, parsing the source of
    each imported module it counts as local: any outside the standard library and the venv's own site-packages.
    Our venv sees Debian's packages (--system-site-packages, for bcc), so bcc counted as ours: parsed at the first
    example, the non-raw b'^.*\.cold(\.\d+)?$' on line 749 of Debian 0.26's bcc/__init__.py (raw in later bcc)
    printed `<unknown>:749: DeprecationWarning: invalid escape sequence '\.'` once per clean run, and the
    constants of bcc, yaml and cryptography were drawn with flowscope's. Every site directory of this
    interpreter is someone else's. No public setting says which code is ours, hence Hypothesis's internal set;
    tests/test_hypothesis_draws_on_flowscope.py fails, rather than every test, should that change."""
    from hypothesis.internal import scrutineer

    known = getattr(scrutineer, "SITE_PACKAGES_DIRS", None)  # gone in a later Hypothesis: that test says so
    if isinstance(known, set):
        known.update(Path(path).resolve() for path in site.getsitepackages())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_bpf = [item for item in items if item.get_closest_marker("bpf")]
    if not needs_bpf:
        return
    reason = bpf_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        for item in needs_bpf:
            item.add_marker(pytest.mark.usefixtures("_fail_without_bpf"))
    else:
        for item in needs_bpf:
            item.add_marker(pytest.mark.skip(reason=f"BPF unavailable: {reason}"))


@pytest.fixture
def _fail_without_bpf() -> None:
    pytest.fail(f"BPF tests must run under CI, but BPF is unavailable: {bpf_unavailable_reason()}")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path, for unix sockets (whose paths must stay under 108 bytes: pytest's
    tmp_path is often longer); removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="fs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


_TEST_NETNS = re.compile(r"^fs-t(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove namespaces of earlier test runs whose process is gone (killed with -9, say), and what runs in them."""
    if os.geteuid() != 0:
        return
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _TEST_NETNS.match(name)
        if match and not _alive(int(match.group(1))):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                subprocess.run(["kill", "-9", pid], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
