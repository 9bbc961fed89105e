"""The file sink on real files: JSON ExportEvent lines read back as observe --input-file reads them, lumberjack's
rotation with gzip and a kept count, and a full disk (a small tmpfs this test mounts) stopping the exporter."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format
from records import TS, lab_registry, lost_record, record, tcp4
from test_export_core import ListSink, ingest, pipeline

from flowscope.api.observer import observer_pb2
from flowscope.cli.observe.offline import responses as read_back
from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportSpec, ExportSubscriber, Selection
from flowscope.observer.exporter.file import FileSink, backups
from flowscope.observer.exporter.settings import Rotation
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder


def flows(count: int, sport: int = 40000) -> np.ndarray:
    batch = np.concatenate([record(tcp4(sport=sport + i)) for i in range(count)])
    batch["ts"] = TS + np.arange(count) * 1000
    return batch


def file_pipeline(path: Path, rotation: Rotation | None = None) -> tuple[FlowRing, ExportSubscriber]:
    decoder = FlowDecoder("node1", lab_registry(), b"instance")
    ring = FlowRing(4095, record().dtype)
    sink = FileSink(path, rotation or Rotation())
    return ring, ExportSubscriber("file", Selection(ExportSpec(), decoder), sink, lambda: ring.written, LostCounts())


def test_lines_are_json_export_events_as_json_format_writes_them_and_observe_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    ring, subscriber = file_pipeline(path)
    batch = np.concatenate([flows(3), lost_record(count=4)])
    ingest(ring, subscriber, batch)
    subscriber.close()
    lines = path.read_text().splitlines()
    events = [json_format.Parse(line, observer_pb2.ExportEvent()) for line in lines]
    assert [e.WhichOneof("response_types") for e in events] == ["flow", "flow", "flow", "lost_events"]
    for line, event in zip(lines, events, strict=True):
        dumped = json.dumps(json_format.MessageToDict(event, preserving_proto_field_name=True), separators=(",", ":"))
        assert line == dumped  # Hubble's exporter: protojson with proto field names
    assert all(e.node_name == "node1" and e.time.ToNanoseconds() > 0 for e in events)
    # the same lines as the GetFlows responses a ListSink got for the same records
    sink = ListSink()
    ring2, other, _ = pipeline(ExportSpec(), sink)
    ingest(ring2, other, batch.copy())
    other.close()
    assert [observer_pb2.GetFlowsResponse.FromString(e.SerializeToString()) for e in events] == sink.responses()
    read = list(read_back(lines, observer_pb2.GetFlowsRequest(whitelist=[{"source_port": ["40001"]}])))
    assert [r.flow.l4.TCP.source_port for r in read] == [40001]


def test_rotation_names_backups_as_lumberjack_gzips_them_and_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    ring, subscriber = file_pipeline(path, Rotation(max_size_mb=4096 / 2**20, max_backups=2, compress=True))
    for round_ in range(8):  # each batch's lines are ~2 KiB: about a rotation every other batch
        ingest(ring, subscriber, flows(3, sport=40000 + 10 * round_))
    subscriber.close()
    kept = backups(path)
    assert len(kept) == 2 and all(p.name.startswith("flows-") and p.name.endswith(".log.gz") for p in kept)
    assert path.stat().st_size <= 4096
    ports = []
    for backup in [*kept, path]:
        text = gzip.decompress(backup.read_bytes()).decode() if backup.suffix == ".gz" else backup.read_text()
        ports += [json.loads(line)["flow"]["l4"]["TCP"]["source_port"] for line in text.splitlines()]
    assert ports == sorted(ports) and ports[-1] == 40072  # the newest flows, in order, across the files
    assert subscriber.counts.exported == 24 and not subscriber.stopped


def test_its_status_counts_the_bytes_it_wrote_and_the_files_it_rotated(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    ring, subscriber = file_pipeline(path, Rotation(max_size_mb=4096 / 2**20, max_backups=0))
    for round_ in range(8):
        ingest(ring, subscriber, flows(3, sport=40000 + 10 * round_))
    subscriber.close()
    status = subscriber.status()
    assert (status.name, status.kind, status.target) == ("file", "file", str(path))
    assert status.rotations == len(backups(path)) >= 3
    assert status.bytes_written == sum(p.stat().st_size for p in [*backups(path), path])
    assert status.flows_exported == 24 and not status.stopped


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, unmounted at the end whatever happens."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_exporter_and_logs_once(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = small_disk / "flows.log"
    ring, subscriber = file_pipeline(path, Rotation(max_size_mb=1, max_backups=0))
    for round_ in range(100):  # ~900 KiB of lines: more than the disk holds
        ingest(ring, subscriber, flows(10, sport=round_ * 10 + 1000))
    subscriber.close()
    counts = subscriber.counts
    assert subscriber.stopped and counts.exported > 0 and counts.failed > 0
    assert counts.exported + counts.failed + counts.dropped == 1000  # dropped: batches fed faster than written
    stops = [r for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stops) == 1 and "No space left on device" in stops[0].getMessage()


def test_the_path_stdout_writes_the_lines_to_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    ring, subscriber = file_pipeline(Path("stdout"))
    ingest(ring, subscriber, flows(2))
    subscriber.close()
    out = capfd.readouterr().out.splitlines()
    assert [json.loads(line)["flow"]["l4"]["TCP"]["source_port"] for line in out] == [40000, 40001]
