"""flowscope's version, as pyproject.toml gives it, for the agent and the relay to report in ServerStatus.

Read from the installed package's metadata, which pip writes from pyproject.toml, so the number is written in
one place and a release changes it there alone. A copy of the code that was never installed has no metadata;
"unknown" says so rather than report a number that may be wrong.
"""

from __future__ import annotations

from importlib import metadata


def _installed_version() -> str:
    try:
        return metadata.version("flowscope")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _installed_version()
