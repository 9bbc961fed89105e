"""What the agent is told to export: the static file exporter's flags and the dynamic configuration's path.

The flags are Hubble's (--hubble-export-* without the prefix). Allow and deny lists take JSON FlowFilters as
Hubble's do: one or more JSON objects, separated by white space, newlines or commas (or a JSON list of them),
with field names as protojson accepts them (source_pod or sourcePod).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from flowscope.api.flow import flow_pb2
from flowscope.observer.exporter.core import ExportSpec

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class Rotation:
    """Lumberjack's settings: Hubble's --export-file-max-size-mb, --export-file-max-backups, --export-file-compress."""

    max_size_mb: float = 10
    max_backups: int = 5
    compress: bool = False

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * MEGABYTE)


@dataclass(frozen=True)
class FileExport:
    """One file exporter: where, what, and how its files rotate."""

    name: str
    path: str
    spec: ExportSpec = field(default_factory=ExportSpec)
    rotation: Rotation = field(default_factory=Rotation)


@dataclass(frozen=True)
class ExportSettings:
    """The agent's exporters: the static one (--export-file) and the dynamic configuration (--flowlogs-config)."""

    file: FileExport | None = None
    flowlogs_config: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.flowlogs_config is not None


def parse_filters(text: str, flag: str = "filter") -> tuple[flow_pb2.FlowFilter, ...]:
    """Hubble's FlowFilter list syntax: JSON objects one after another (white space or commas between), or a
    JSON list; ValueError saying which filter is wrong."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = 0
    while True:
        while at < len(text) and (text[at].isspace() or text[at] == ","):
            at += 1
        if at == len(text):
            break
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{flag}: not JSON at character {exc.pos + 1}: {exc.msg}") from None
        found.extend(value if isinstance(value, list) else [value])
    return tuple(flow_filter(value, f"{flag} #{number}") for number, value in enumerate(found, 1))


def flow_filter(value: Any, what: str) -> flow_pb2.FlowFilter:
    """One FlowFilter from its JSON (or YAML) value; ValueError naming `what` and the field at fault."""
    if not isinstance(value, dict):
        raise ValueError(f"{what}: a FlowFilter is an object, not {type(value).__name__}")
    try:
        return json_format.ParseDict(value, flow_pb2.FlowFilter())
    except json_format.ParseError as exc:  # its first line says what; the rest lists every field there is
        raise ValueError(f"{what}: {str(exc).splitlines()[0]}") from None


def from_args(args: argparse.Namespace) -> ExportSettings:
    """The settings the flags give; ValueError with the flag and what is wrong."""
    has_file_flags = args.export_allowlist or args.export_denylist or args.export_fieldmask
    if has_file_flags and not args.export_file:
        raise ValueError("--export-allowlist, --export-denylist and --export-fieldmask need --export-file")
    if args.export_file_max_size_mb < 1:
        raise ValueError(f"--export-file-max-size-mb must be at least 1, not {args.export_file_max_size_mb}")
    if args.export_file_max_backups < 0:
        raise ValueError(f"--export-file-max-backups must be 0 or more, not {args.export_file_max_backups}")
    file = None
    if args.export_file:
        spec = ExportSpec(
            allow=parse_filters(args.export_allowlist, "--export-allowlist"),
            deny=parse_filters(args.export_denylist, "--export-denylist"),
            field_mask=tuple(path.strip() for path in args.export_fieldmask.split(",") if path.strip()),
        )
        try:
            spec.field_tree()
        except ValueError as exc:
            raise ValueError(f"--export-fieldmask: {exc}") from None
        rotation = Rotation(args.export_file_max_size_mb, args.export_file_max_backups, args.export_file_compress)
        file = FileExport("static", args.export_file, spec, rotation)
    return ExportSettings(file, args.flowlogs_config)
