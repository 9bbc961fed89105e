"""`flowscope top`: a live, full-screen view of flows by connection (state, rendering, keys, the command)."""

from __future__ import annotations

from flowscope.cli.top.command import register, run

__all__ = ["register", "run"]
