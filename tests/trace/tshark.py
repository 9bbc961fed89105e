"""Reading a session's pcapng with the real tshark (Debian's, installed by scripts/setup): what a person running
`tshark -r session.pcapng` sees, field by field.

    from tshark import frames, capture_comments
    frames(path, "frame.interface_name", "frame.packet_id", display_filter="frame.packet_id == 1")
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TIMEOUT = 60.0  # tshark starts slowly (its dissectors) on a loaded machine


def frames(path: str | Path, *fields: str, display_filter: str = "") -> list[dict[str, str]]:
    """One row per frame (those `display_filter` shows), each field's text as tshark prints it ("" when the
    frame lacks it; a field a frame has twice comes as "a|b")."""
    command = [_tshark(), "-r", str(path), "-n", "-T", "fields", "-E", "separator=\t", "-E", "aggregator=|"]
    command += [word for field in fields for word in ("-e", field)]
    if display_filter:
        command += ["-Y", display_filter]
    lines = _run(command).splitlines()
    return [dict(zip(fields, line.split("\t"), strict=True)) for line in lines]


def capture_comments(path: str | Path) -> list[str]:
    """The section header's comments, as capinfos lists them."""
    out = _run([_program("capinfos"), "-k", str(path)])
    prefix = "Capture comment:"
    return [line.split(prefix, 1)[1].strip() for line in out.splitlines() if line.startswith(prefix)]


def capture_application(path: str | Path) -> str:
    out = _run([_program("capinfos"), "-F", str(path)])
    for line in out.splitlines():
        if line.startswith("Capture application:"):
            return line.split(":", 1)[1].strip()
    return ""


def _tshark() -> str:
    return _program("tshark")


def _program(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: scripts/setup installs it (Debian's tshark package)"
    return found


def _run(command: list[str]) -> str:
    """stdout of a run that must succeed (tshark names a malformed file on stderr and exits non-zero)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}"
    return done.stdout
