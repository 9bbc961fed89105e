"""`flowscope map`: a live map of who talks to whom (state, layout, drawing, pictures, keys, the command)."""

from __future__ import annotations

from flowscope.cli.map.command import register, run

__all__ = ["register", "run"]
