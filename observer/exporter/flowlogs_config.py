"""Hubble's dynamic flow-log configuration (--hubble-flowlogs-config-path): a YAML list of exporters.

    flowLogs:
      - name: drops
        filePath: /var/log/flowscope/drops.log
        fieldMask: [time, source, destination, verdict, drop_reason_desc]
        includeFilters:
          - verdict: [DROPPED]
        excludeFilters: []
        end: "2026-12-31T23:59:59Z"        # optional: export nothing after this time

Each entry is one file exporter; names are unique (they say which exporter changed). flowscope also takes
fileMaxSizeMb, fileMaxBackups and fileCompress in an entry (the static flags' defaults otherwise). A file that
cannot be used is refused whole with the line at fault (ConfigError): a YAML syntax error's line, or the line
of the entry (or of its field) that is wrong.
"""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from google.protobuf import timestamp_pb2

from flowscope.observer.exporter.core import ExportSpec
from flowscope.observer.exporter.settings import FileExport, Rotation, flow_filter

_FIELDS = {
    "name",
    "filePath",
    "fieldMask",
    "includeFilters",
    "excludeFilters",
    "end",
    "fileMaxSizeMb",
    "fileMaxBackups",
    "fileCompress",
}


class ConfigError(ValueError):
    """A configuration refused; the message starts with the file's line at fault."""


def parse_flowlogs(text: str, source: str = "flowlogs config") -> list[FileExport]:
    """The exporters a configuration file describes; ConfigError ("PATH:LINE: what") when it is wrong."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: not YAML: {exc.problem or exc.context}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{source}:{_line(root)}: expected a mapping with a flowLogs: list")
    entries = _value_node(root, "flowLogs")
    if entries is None or _is_null(entries):
        return []
    if not isinstance(entries, yaml.SequenceNode):
        raise ConfigError(f"{source}:{_line(entries)}: flowLogs must be a list of exporters")
    exporters: list[FileExport] = []
    names: set[str] = set()
    for node in entries.value:
        try:
            exporter = _exporter(node)
        except ValueError as exc:
            raise ConfigError(f"{source}:{_line(getattr(exc, 'node', None) or node)}: {exc}") from None
        if exporter.name in names:
            raise ConfigError(f"{source}:{_line(node)}: a second exporter named {exporter.name!r}")
        names.add(exporter.name)
        exporters.append(exporter)
    return exporters


class _FieldError(ValueError):
    """A field's value is wrong; `node` is where (its line)."""

    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.node = node


def _exporter(node: yaml.Node) -> FileExport:
    if not isinstance(node, yaml.MappingNode):
        raise _FieldError("an exporter is a mapping (name, filePath, ...)", node)
    fields = {key.value: value for key, value in node.value}
    for key, _ in node.value:
        if key.value not in _FIELDS:
            raise _FieldError(f"unknown field {key.value!r} (known: {', '.join(sorted(_FIELDS))})", key)
    data: dict[str, Any] = yaml.safe_load(yaml.serialize(node)) or {}
    name, path = data.get("name"), data.get("filePath")
    if not isinstance(name, str) or not name:
        raise _FieldError("an exporter needs a name", node)
    if not isinstance(path, str) or not path:
        raise _FieldError(f"exporter {name!r} needs a filePath", node)
    what = f"exporter {name!r}"
    allow = _filters(data.get("includeFilters"), f"{what} includeFilters", fields.get("includeFilters", node))
    deny = _filters(data.get("excludeFilters"), f"{what} excludeFilters", fields.get("excludeFilters", node))
    mask = data.get("fieldMask") or []
    if isinstance(mask, str):
        mask = [part.strip() for part in mask.split(",") if part.strip()]
    if not isinstance(mask, list) or not all(isinstance(path, str) for path in mask):
        raise _FieldError(f"{what} fieldMask: a list of field paths", fields.get("fieldMask", node))
    spec = ExportSpec(allow, deny, tuple(mask), _end(data.get("end"), what, fields.get("end", node)))
    try:
        spec.field_tree()
    except ValueError as exc:
        raise _FieldError(f"{what} fieldMask: {exc}", fields.get("fieldMask", node)) from None
    rotation = Rotation(
        _number(data.get("fileMaxSizeMb", 10), f"{what} fileMaxSizeMb", 1, fields.get("fileMaxSizeMb", node)),
        _number(data.get("fileMaxBackups", 5), f"{what} fileMaxBackups", 0, fields.get("fileMaxBackups", node)),
        bool(data.get("fileCompress", False)),
    )
    return FileExport(name, path, spec, rotation)


def _filters(value: Any, what: str, node: yaml.Node) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _FieldError(f"{what}: a list of FlowFilters", node)
    items = node.value if isinstance(node, yaml.SequenceNode) else [node] * len(value)
    filters = []
    for number, (item, item_node) in enumerate(zip(value, items, strict=True), 1):
        try:
            filters.append(flow_filter(item, f"{what} #{number}"))
        except ValueError as exc:
            raise _FieldError(str(exc), item_node) from None
    return tuple(filters)


def _end(value: Any, what: str, node: yaml.Node) -> int | None:
    """`end` as wall-clock ns: an RFC 3339 time (YAML may have read it as a datetime already)."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(str(value))
    except ValueError:
        raise _FieldError(f"{what} end: not an RFC 3339 time: {value!r}", node) from None
    return stamp.ToNanoseconds()


def _number(value: Any, what: str, least: int, node: yaml.Node) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise _FieldError(f"{what}: a whole number of at least {least}, not {value!r}", node)
    return value


def _value_node(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((value for k, value in mapping.value if k.value == key), None)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1
