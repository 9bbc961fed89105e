"""`flowscope observe`: flags, the request they make, and the command."""

from __future__ import annotations

from flowscope.cli.observe.command import register, run

__all__ = ["register", "run"]
