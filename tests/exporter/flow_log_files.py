"""Reading the flow logs an exporter is writing: whole lines only.

An exporter appends through a buffer, so a file read while it writes may end in a line cut where the buffer
was flushed; a reader following the file (`tail -f`, a log shipper) sees the same and reads that line once it
is complete. Tests read the files as such a reader does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def whole_text(path: Path) -> str:
    """The file up to its last newline ("" for a file not made yet)."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1]


def whole_lines(path: Path) -> list[dict[str, Any]]:
    """Each whole line, as the JSON object it holds."""
    return [json.loads(line) for line in whole_text(path).splitlines()]
