"""Loading another checkout's flowscope in a worker process, for the benchmarks that set two checkouts side by side.

A checkout's code is importable as `flowscope.*` only through the link tree its own scripts/setup makes
(build/__editable__.*/flowscope, a strict editable install): putting the checkout's root on sys.path finds
nothing. So a worker puts that tree on sys.path in place of this checkout's, before anything has imported `flowscope`,
and then checks that the package it got is the one it asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path


def link_tree(checkout: Path) -> Path:
    """The folder holding `checkout`'s flowscope package; SystemExit, saying what to do, when there is none."""
    # The newest: a checkout that gained a C extension has a platform-named tree beside its old pure-Python one.
    trees = sorted(checkout.glob("build/__editable__.*/flowscope"), key=lambda tree: tree.stat().st_mtime)
    if not trees:
        raise SystemExit(
            f"{checkout} has no build/__editable__.*/flowscope: run {checkout}/scripts/setup there first (a checkout"
            " from before every folder installed as flowscope.<folder> cannot be loaded this way)"
        )
    return trees[-1].parent


def import_checkout(checkout: Path) -> None:
    """Make `import flowscope` in this process load `checkout`'s code. Call it before anything imports flowscope."""
    if any(name == "flowscope" or name.startswith("flowscope.") for name in sys.modules):
        raise RuntimeError("the worker imported a flowscope package before its checkout's")
    tree = link_tree(checkout)
    # flowscope is a namespace package: every tree on sys.path would add its folders to it. Keep only this one.
    sys.path[:] = [str(tree)] + [entry for entry in sys.path if not (Path(entry) / "flowscope").is_dir()]
    import flowscope

    portions = [Path(portion) for portion in flowscope.__path__]
    if portions != [tree / "flowscope"]:
        raise RuntimeError(f"the worker loaded flowscope from {portions}, not from {tree}")
