"""Entry point of the `flowscope` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("flowscope: not built yet", file=sys.stderr)
    return 1
