"""The dynamic flow-log configuration: Hubble's flowLogs YAML parsed (and refused with the line at fault), and
exporters added, changed and removed by name while batches flow, from a real file watched for changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from flow_log_files import whole_lines
from records import TS, lab_registry, record, tcp4, udp4
from waiting import wait_for

from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.flowlogs import ConfigWatcher, FlowLogs
from flowscope.observer.exporter.flowlogs_config import ConfigError, parse_flowlogs
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder

HUBBLE_EXAMPLE = """
flowLogs:
  - name: "test001"
    filePath: "/var/log/network/flow-log/pa/test001.log"
    fieldMask: ["source.namespace", "source.pod_name", "destination.namespace", "destination.pod_name", "verdict"]
    includeFilters:
      - source_pod: ["default/"]
        event_type:
          - type: 1
      - destination_pod: ["frontend/nginx-975996d4c-7hhgt"]
    excludeFilters: []
    end: "2023-10-09T23:59:59-07:00"
  - name: "test002"
    filePath: "/var/log/network/flow-log/pa/test002.log"
    fieldMask: ["source.namespace", "source.pod_name", "destination.namespace", "destination.pod_name", "verdict"]
    includeFilters:
      - destinationPod: ["ns1/"]
    excludeFilters:
      - source_pod: ["kube-system/"]
"""


def test_hubbles_example_configuration_parses() -> None:
    first, second = parse_flowlogs(HUBBLE_EXAMPLE)
    assert (first.name, first.path, second.name) == ("test001", "/var/log/network/flow-log/pa/test001.log", "test002")
    assert first.spec.allow[0].source_pod == ["default/"] and first.spec.allow[0].event_type[0].type == 1
    assert first.spec.end_ns == 1696921199 * 10**9
    assert second.spec.allow[0].destination_pod == ["ns1/"] and second.spec.deny[0].source_pod == ["kube-system/"]
    assert first.spec.field_mask[-1] == "verdict"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("flowLogs:\n  - name: a\n    filePath: [unclosed\n", 4, "not YAML"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n  - name: b\n", 4, "needs a filePath"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n    includeFilters:\n      - {verdict: [NOPE]}\n", 5, "#1"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n    fieldMask: [source, nothing]\n", 4, "nothing"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n    colour: blue\n", 4, "unknown field 'colour'"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n  - name: a\n    filePath: /tmp/b\n", 4, "second"),
        ("flowLogs:\n  - name: a\n    filePath: /tmp/a\n    end: yesterday\n", 4, "RFC 3339"),
    ],
)
def test_a_bad_configuration_is_refused_with_the_line_at_fault(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_flowlogs(text, "flowlogs.yaml")
    assert str(refused.value).startswith(f"flowlogs.yaml:{line}:") and words in str(refused.value)


def config(*entries: str) -> str:
    return "flowLogs:\n" + "".join(entries)


def entry(name: str, path: Path, protocol: str = "") -> str:
    filters = f"    includeFilters:\n      - protocol: [{protocol}]\n" if protocol else ""
    return f"  - name: {name}\n    filePath: {path}\n{filters}"


def ports(path: Path) -> list[int]:
    flows = [line["flow"] for line in whole_lines(path)]
    return [f["l4"].get("TCP", f["l4"].get("UDP", {}))["source_port"] for f in flows]


class Node:
    """A ring and the FlowLogs subscriber behind it, fed batches as the ingest loop feeds them."""

    def __init__(self) -> None:
        self.ring = FlowRing(4095, record().dtype)
        self.flow_logs = FlowLogs(FlowDecoder("node1", lab_registry(), b"i"), lambda: self.ring.written, LostCounts())
        self.sport = 40000

    def send(self) -> None:
        batch = np.concatenate([record(tcp4(sport=self.sport)), record(udp4(sport=self.sport + 1))])
        batch["ts"] = TS
        self.sport += 2
        batch.flags.writeable = False
        self.ring.write(batch)
        self.flow_logs(batch)


def rewrite(path: Path, text: str) -> None:
    """Replace the file whole, as a ConfigMap update does, with a modification time surely new."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    stat = path.stat() if path.exists() else None
    os.replace(temporary, path)
    if stat is not None:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_exporters_are_added_changed_and_removed_by_name_and_a_bad_file_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    a, b, c = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "c.log"
    yaml_path = tmp_path / "flowlogs.yaml"
    rewrite(yaml_path, config(entry("a", a)))
    node = Node()
    watcher = ConfigWatcher(yaml_path, node.flow_logs, [], poll_s=0.05)
    try:
        node.send()  # 40000 tcp, 40001 udp
        rewrite(yaml_path, config(entry("a", a), entry("b", b, "udp")))  # b added
        wait_for(lambda: watcher.reloads == 2)
        node.send()  # 40002, 40003
        rewrite(yaml_path, config(entry("a", a, "tcp"), entry("b", b, "udp")))  # a changed, b as it was
        wait_for(lambda: watcher.reloads == 3)
        node.send()  # 40004, 40005
        rewrite(yaml_path, "flowLogs:\n  - name: c\n    filePath: [\n")  # refused: a and b go on
        wait_for(lambda: watcher.refused == 1)
        node.send()  # 40006, 40007
        rewrite(yaml_path, config(entry("c", c)))  # a and b removed, c added
        wait_for(lambda: watcher.reloads == 4)
        node.send()  # 40008, 40009
    finally:
        watcher.close()
        node.flow_logs.close()
    assert ports(a) == [40000, 40001, 40002, 40003, 40004, 40006]
    assert ports(b) == [40003, 40005, 40007]
    assert ports(c) == [40008, 40009]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and f"{yaml_path}:4: not YAML" in refusals[0]


def test_a_configuration_refused_at_start_still_runs_the_export_file_exporter(tmp_path: Path) -> None:
    from flowscope.observer.exporter.settings import FileExport

    yaml_path = tmp_path / "flowlogs.yaml"
    yaml_path.write_text("flowLogs: {not: a list}\n")
    node = Node()
    static = FileExport("static", str(tmp_path / "static.log"))
    watcher = ConfigWatcher(yaml_path, node.flow_logs, [static], poll_s=0.05)
    try:
        node.send()
    finally:
        watcher.close()
        node.flow_logs.close()
    assert watcher.refused == 1 and ports(tmp_path / "static.log") == [40000, 40001]
