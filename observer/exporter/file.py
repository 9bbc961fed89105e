"""The file exporter's sink: one JSON ExportEvent per line, in files rotated by size as Hubble's are.

The line is what Hubble's exporter writes (protojson with proto field names: flow, node_name, time) and what
`hubble observe -o jsonpb` prints, so `hubble observe --input-file` and `flowscope observe --input-file` read
it back. It is written from the response's wire bytes by the CLI's JSON writer (cli/printer/protojson.py:
json_format's text for a fraction of its cost); a GetFlowsResponse holding a flow or a lost event has the same
bytes as the ExportEvent holding it, so the bytes are read as an ExportEvent.

Rotation follows lumberjack, which Hubble's exporter uses: when a write would take the file past its size, it is
renamed to name-<UTC time>.ext beside it (2006-01-02T15-04-05.000), optionally gzipped to that name plus .gz,
and a new file is started; beyond `max_backups` backups the oldest are removed (0 keeps them all). The path
`stdout` writes to the agent's standard output, unrotated, as Hubble's does.

Any OSError (a full disk, a file or folder it may not write) stops the exporter: ExportFailed(stop=True), which
the pipeline logs once and counts; the agent goes on.
"""

from __future__ import annotations

import datetime
import gzip
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.protojson import slow_json, wire_json
from flowscope.cli.printer.shadow import NotCanonical
from flowscope.observer.exporter.core import ExportFailed
from flowscope.observer.exporter.settings import Rotation

STDOUT = "stdout"
_BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"
_EXPORT_EVENT = observer_pb2.ExportEvent.DESCRIPTOR


def export_event_line(response: bytes) -> bytes:
    """One line of the flow log: the ExportEvent whose bytes these are, as JSON, newline-terminated."""
    try:
        text = wire_json(response, _EXPORT_EVENT)
    except NotCanonical:
        text = slow_json(observer_pb2.ExportEvent.FromString(response))
    return text.encode() + b"\n"


class FileSink:
    """Writes each exported batch as JSON lines to `path`, rotating by size; flushed after each batch. Counts the
    bytes it wrote and the files it rotated."""

    messages = False

    def __init__(self, path: str | Path, rotation: Rotation | None = None) -> None:
        self.path = str(path)
        self.bytes_written = 0
        self.rotations = 0
        self._rotation = rotation or Rotation()
        self._file: IO[bytes] | None = None
        self._size = 0

    def export(self, responses: Sequence[Any]) -> None:
        lines = [export_event_line(response) for response in responses]
        try:
            if self.path == STDOUT:
                sys.stdout.buffer.write(b"".join(lines))
                sys.stdout.buffer.flush()
            else:
                self._write(lines)
        except OSError as exc:
            self._close_quietly()
            raise ExportFailed(f"cannot write {self.path}: {exc.strerror or exc}", stop=True) from exc
        self.bytes_written += sum(len(line) for line in lines)

    def describe(self, status: observer_pb2.ExporterStatus) -> None:
        status.kind, status.target = "file", self.path
        status.bytes_written, status.rotations = self.bytes_written, self.rotations

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    # --- writing and rotating ----------------------------------------------------------------------------

    def _write(self, lines: list[bytes]) -> None:
        """The lines in runs that fit the current file, rotating between runs; a line longer than the limit goes
        into a file of its own (lumberjack refuses it; a flow log would rather keep it)."""
        file = self._opened()
        limit = self._rotation.max_bytes
        run: list[bytes] = []
        size = self._size
        for line in lines:
            if size + len(line) > limit and size > 0:
                file.write(b"".join(run))
                run, size = [], 0
                file = self._rotate()
            run.append(line)
            size += len(line)
        file.write(b"".join(run))
        file.flush()
        self._size = size

    def _opened(self) -> IO[bytes]:
        """The current file: on first use the existing one is appended to (lumberjack does) if it has room."""
        if self._file is None:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            if size >= self._rotation.max_bytes:
                self._backup()
                size = 0
            self._file = open(path, "ab")  # noqa: SIM115 (held open across batches; closed by close())
            self._size = size
        return self._file

    def _rotate(self) -> IO[bytes]:
        self.close()
        self._backup()
        self.rotations += 1
        self._size = 0
        return self._opened()

    def _backup(self) -> None:
        """Rename the file to its backup name, compress it if asked, and remove backups beyond the kept count."""
        path = Path(self.path)
        if not path.exists():
            return
        at = datetime.datetime.now(datetime.UTC)
        backup = backup_path(path, at)
        while backup.exists() or backup.with_name(backup.name + ".gz").exists():  # two rotations in one ms
            at += datetime.timedelta(milliseconds=1)
            backup = backup_path(path, at)
        os.replace(path, backup)
        if self._rotation.compress:
            _gzip(backup)
        self._remove_old_backups()

    def _remove_old_backups(self) -> None:
        keep = self._rotation.max_backups
        if keep <= 0:
            return
        for old in backups(Path(self.path))[:-keep]:
            old.unlink(missing_ok=True)

    def _close_quietly(self) -> None:
        try:
            self.close()
        except OSError:
            self._file = None


def backup_path(path: Path, at: datetime.datetime) -> Path:
    """Lumberjack's backup name: name-2006-01-02T15-04-05.000.ext beside the file (UTC)."""
    stamp = at.strftime(_BACKUP_TIME) + f".{at.microsecond // 1000:03d}"
    return path.with_name(f"{path.stem}-{stamp}{path.suffix}")


def backups(path: Path) -> list[Path]:
    """The file's backups (gzipped or not), oldest first."""
    pattern = re.compile(
        re.escape(path.stem) + r"-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})" + re.escape(path.suffix) + r"(\.gz)?$"
    )
    found = []
    for candidate in path.parent.iterdir() if path.parent.exists() else ():
        match = pattern.match(candidate.name)
        if match:
            found.append((match.group(1), candidate))
    return [candidate for _, candidate in sorted(found)]


def _gzip(path: Path) -> None:
    compressed = path.with_name(path.name + ".gz")
    with open(path, "rb") as source, gzip.open(compressed, "wb") as target:
        shutil.copyfileobj(source, target)
    path.unlink()
