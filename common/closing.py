"""A base for what holds kernel or network resources and is used in a `with` block that ends in close().

The agent, its datapath and kernel-drop programs, the ring reader and the CLI's connection all open in their
constructor and release in close(); this gives each the same `with` protocol, so none repeats it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """`with x:` returns x and calls x.close() on the way out, whatever happened inside."""

    def close(self) -> None:
        """Release what the object holds; subclasses make it safe to call twice."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
