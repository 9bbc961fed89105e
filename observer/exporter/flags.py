"""The agent's flow-log flags, as Hubble names them (--hubble-export-* without the prefix): docs/exporter.md.

Kept apart from the settings they make so that building the CLI's parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    """The agent's flow-log flags, as Hubble names them (docs/exporter.md)."""
    parser.add_argument("--export-file", metavar="PATH", help="write flows as JSON ExportEvent lines to PATH")
    parser.add_argument(
        "--export-allowlist",
        metavar="JSON",
        default="",
        help="export only flows matching one of these JSON FlowFilters (one per line or comma-separated)",
    )
    parser.add_argument(
        "--export-denylist", metavar="JSON", default="", help="do not export flows matching any of these FlowFilters"
    )
    parser.add_argument(
        "--export-fieldmask", metavar="PATHS", default="", help="export only these Flow fields (e.g. time,source,l4)"
    )
    parser.add_argument("--export-file-max-size-mb", type=int, default=10, metavar="MB", help="rotate at this size")
    parser.add_argument("--export-file-max-backups", type=int, default=5, metavar="N", help="rotated files kept")
    parser.add_argument("--export-file-compress", action="store_true", help="gzip rotated files")
    parser.add_argument(
        "--flowlogs-config",
        metavar="PATH",
        type=Path,
        help="a YAML file of flow-log exporters (Hubble's flowLogs:), reloaded when it changes",
    )
