"""The real `flowscope` command, run as a subprocess against a fake Observer server on a unix socket."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from pathlib import Path

import cli_samples as samples
import grpc
import pytest
from cli_fake_server import FakeServer
from cli_runner import run_flowscope, start_flowscope
from google.protobuf.wrappers_pb2 import UInt32Value

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2

T = "Jan  1 00:00:00.123"


def observe(server: FakeServer, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_flowscope("observe", "--server", server.target, *args, env=env)


def test_observe_prints_the_last_flows(server: FakeServer, cli_env: dict[str, str]) -> None:
    result = observe(server, cli_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{T}: default/client:34567 (ID:12345) -> default/server:80 (ID:23456) to-endpoint FORWARDED (TCP Flags: SYN)"
    )
    assert " NO_SOCKET DROPPED (UDP)" in lines[6]
    assert lines[-1] == f"{T} EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 1"
    assert len(lines) == 9
    assert result.stderr == f"{T} [relay]: 2 nodes are unavailable: node-2, node-3\n"
    request = server.requests[-1]
    assert (request.number, request.follow, request.first) == (20, False, False)
    assert "flowscope" in request.field_mask.paths


def test_observe_flows_with_filters(server: FakeServer, cli_env: dict[str, str]) -> None:
    result = observe(server, cli_env, "flows", "--first", "2", "--from-pod", "default/client", "--not", "-t", "drop")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    request = server.requests[-1]
    assert (request.number, request.first) == (2, True)
    assert list(request.whitelist[0].source_pod) == ["default/client"]
    assert request.blacklist[0].event_type[0].type == 1


@pytest.mark.parametrize("output", ["compact", "dict", "json", "jsonpb", "table"])
def test_every_output_format(server: FakeServer, cli_env: dict[str, str], output: str) -> None:
    result = observe(server, cli_env, "-o", output, "--last", "20")
    assert result.returncode == 0, result.stderr
    assert "default/client" in result.stdout or '"pod_name":"client"' in result.stdout
    if output.startswith("json"):
        responses = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(responses) == 9
        assert all("node_name" in response and "time" in response for response in responses)
        assert not server.requests[-1].HasField("field_mask")
    if output == "table":
        assert result.stdout.splitlines()[0].split() == [
            "TIMESTAMP",
            "SOURCE",
            "DESTINATION",
            "TYPE",
            "VERDICT",
            "SUMMARY",
        ]


def test_last_n(server: FakeServer, cli_env: dict[str, str]) -> None:
    result = observe(server, cli_env, "--last", "3")
    assert result.returncode == 0, result.stderr
    assert server.requests[-1].number == 3
    assert result.stdout.splitlines() == [
        f"{T}: default/client:34567 (ID:12345) -> default/server:80 (ID:23456)"
        " policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN)",
        f"{T} EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 1",
    ]


def _lines(stream: object) -> queue.Queue[str]:
    """Lines of a pipe, as they arrive, read by a thread (so a test can wait for one with a timeout)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_follow_streams_line_by_line_and_stops_cleanly_on_ctrl_c(server: FakeServer, cli_env: dict[str, str]) -> None:
    process = start_flowscope("observe", "--server", server.target, "--follow", env=cli_env)
    try:
        lines = _lines(process.stdout)
        assert server.observer.following.wait(15), "the client never asked to follow"
        assert server.requests[-1].follow and server.requests[-1].number == 0
        for offset in (1, 2):
            server.push(samples.response(samples.tcp_flow(offset=offset)))
            line = lines.get(timeout=10)  # arrives on its own: nothing is buffered in follow mode
            assert line.startswith(f"Jan  1 00:00:0{offset}.123: default/client:34567 ")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


def test_unreachable_server_is_one_line(short_tmp: Path, cli_env: dict[str, str]) -> None:
    missing = f"unix://{short_tmp}/nobody.sock"
    result = run_flowscope("observe", "--server", missing, env=cli_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"flowscope: error: cannot connect to {missing} (no such socket)")
    assert result.stdout == ""


def test_bad_flag_is_one_line(cli_env: dict[str, str]) -> None:
    result = run_flowscope("observe", "--frobnicate", env=cli_env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--frobnicate" in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ip-version", "v5"], "argument --ip-version: invalid IP version 'v5', expected v4, v6 or none"),
        (["--protocol", "tpc"], "argument --protocol: unknown protocol 'tpc' (known: tcp, udp, sctp,"),
        (["--from-ip", "10.0.0.300"], "argument --from-ip: '10.0.0.300' is not an IP address"),
        (["--snat-ip", "10.0.0.0/33"], "argument --snat-ip: '10.0.0.0/33' is not a CIDR"),
        (["--port", "70000"], "argument --port: '70000' is not a port number (0-65535)"),
        (["--lst", "5"], "unrecognized arguments: --lst"),
    ],
)
def test_a_bad_filter_value_is_refused_before_anything_is_sent(
    server: FakeServer, cli_env: dict[str, str], flags: list[str], message: str
) -> None:
    result = observe(server, cli_env, *flags)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not server.requests


def test_an_unknown_object_to_observe_is_named(server: FakeServer, cli_env: dict[str, str]) -> None:
    result = observe(server, cli_env, "5")
    assert (result.returncode, result.stderr) == (
        2,
        "flowscope: error: unknown object to observe '5': flows, agent-events, debug-events\n",
    )
    assert observe(server, cli_env, "flows").returncode == 0


def test_version(cli_env: dict[str, str]) -> None:
    result = run_flowscope("--version", env=cli_env)
    assert result.returncode == 0
    name, version = result.stdout.split()
    assert name == "flowscope" and version[0].isdigit()


def test_usage_error_is_one_line(server: FakeServer, cli_env: dict[str, str]) -> None:
    result = observe(server, cli_env, "--first", "1", "--last", "1")
    assert (result.returncode, result.stderr) == (2, "flowscope: error: cannot set both --first and --last\n")
    result = observe(server, cli_env, "-f", "-o", "table")
    assert result.returncode == 2 and "not compatible with follow mode" in result.stderr


def test_invalid_argument_from_the_server(server: FakeServer, cli_env: dict[str, str]) -> None:
    server.observer.abort = (grpc.StatusCode.INVALID_ARGUMENT, "number cannot be combined with since/until")
    result = observe(server, cli_env, "--last", "5", "--since", "1h")
    assert result.returncode == 1
    assert result.stderr == (
        "flowscope: error: server error: INVALID_ARGUMENT: number cannot be combined with since/until\n"
    )


def test_print_raw_filters_needs_no_server(cli_env: dict[str, str]) -> None:
    result = run_flowscope("observe", "--print-raw-filters", "--to-port", "53", env=cli_env)
    assert (result.returncode, result.stdout) == (0, 'allowlist:\n    - \'{"destination_port":["53"]}\'\n')


def test_colour_only_when_asked_or_on_a_terminal(server: FakeServer, cli_env: dict[str, str]) -> None:
    assert "\x1b[" not in observe(server, cli_env).stdout  # a pipe
    assert "\x1b[32mFORWARDED\x1b[0m" in observe(server, cli_env, "--color", "always").stdout
    assert "\x1b[" not in observe(server, cli_env, "--color", "never").stdout


def _status(server: FakeServer) -> None:
    status = observer_pb2.ServerStatusResponse(
        num_flows=16380,
        max_flows=16380,
        seen_flows=97740,
        uptime_ns=3_600_000_000_000,
        num_connected_nodes=UInt32Value(value=3),
        num_unavailable_nodes=UInt32Value(value=1),
        unavailable_nodes=["node-9"],
    )
    status.flowscope_lost.kernel_buffer = 1500
    status.flowscope_lost.ring_overrun = 2
    server.observer.status = status


def test_status(server: FakeServer, cli_env: dict[str, str]) -> None:
    _status(server)
    result = run_flowscope("status", "--server", server.target, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Healthcheck (via {server.target}): Ok\n"
        "Current/Max Flows: 16,380/16,380 (100.00%)\n"
        "Flows/s: 27.15\n"
        "Connected Nodes: 3/4\n"
        "Unavailable Nodes: 1\n"
        "  - node-9\n"
        "Lost Events: kernel buffer 1,500, ring overrun 2\n"
    )


def test_status_names_each_exporter_and_its_node_and_says_what_went_wrong(
    server: FakeServer, cli_env: dict[str, str]
) -> None:
    _status(server)
    exporters = server.observer.status.flowscope_exporters
    exporters.add(
        name="drops", kind="file", target="/var/log/drops.log", node_name="node-1", flows_exported=1200
    ).flows_filtered = 34000
    file = exporters[0]
    file.bytes_written, file.rotations, file.flows_dropped, file.lost_events = 2_500_000, 3, 40, 1540
    exporters.add(name="clickhouse", kind="clickhouse", target="http://ch:8123", node_name="relay", stopped=True)
    clickhouse = exporters[1]
    clickhouse.flows_exported, clickhouse.rows_stored, clickhouse.rows_buffered = 9000, 8000, 900
    clickhouse.rows_lost, clickhouse.failed_inserts = 100, 2
    result = run_flowscope("status", "--server", server.target, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "Exporter drops on node-1 (file /var/log/drops.log): 1,200 flows exported, 34,000 filtered out, "
        "40 dropped (queue full), 1,540 lost events reported; 2.5 MB written, 3 rotations",
        "Exporter clickhouse on relay (clickhouse http://ch:8123): STOPPED; 9,000 flows exported, 0 filtered out; "
        "8,000 rows stored, 900 buffered, 100 lost, 2 failed inserts",
    ]


def test_status_of_an_unhealthy_server(server: FakeServer, cli_env: dict[str, str]) -> None:
    server.set_serving(False)
    result = run_flowscope("status", "--server", server.target, env=cli_env)
    assert result.returncode == 1
    assert result.stdout == f"Healthcheck (via {server.target}): Unavailable: NOT_SERVING\n"
    assert result.stderr.count("\n") == 1


def test_status_json(server: FakeServer, cli_env: dict[str, str]) -> None:
    _status(server)
    result = run_flowscope("status", "-o", "json", "--server", server.target, env=cli_env)
    assert json.loads(result.stdout)["flowscope_lost"]["kernel_buffer"] == "1500"


def test_list_nodes(server: FakeServer, cli_env: dict[str, str]) -> None:
    nodes = server.observer.nodes.nodes
    nodes.add(name="node-b", state=relay_pb2.NODE_UNAVAILABLE)
    node = nodes.add(name="node-a", state=relay_pb2.NODE_CONNECTED, uptime_ns=7_384_000_000_000, seen_flows=91_120)
    node.num_flows, node.max_flows, node.address, node.version = 4095, 4095, "10.0.0.1:4244", "0.1.0"
    node.tls.enabled = True
    table = run_flowscope("list", "nodes", "--server", server.target, env=cli_env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "NAME     STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS",
        "node-a   Connected     2h3m4s   12.34     4095/4095 (100.00%)",
        "node-b   Unavailable   N/A      N/A       N/A",
    ]
    wide = run_flowscope("list", "nodes", "-o", "wide", "--server", server.target, env=cli_env)
    assert wide.stdout.splitlines()[1].split()[-3:] == ["0.1.0", "10.0.0.1:4244", "Enabled"]
    as_json = json.loads(run_flowscope("list", "nodes", "-o", "json", "--server", server.target, env=cli_env).stdout)
    assert [n["name"] for n in as_json] == ["node-a", "node-b"]


def test_list_namespaces(server: FakeServer, cli_env: dict[str, str]) -> None:
    server.observer.namespaces.namespaces.add(namespace="default")
    server.observer.namespaces.namespaces.add(namespace="kube-system")
    result = run_flowscope("list", "namespaces", "--server", server.target, env=cli_env)
    assert (result.returncode, result.stdout) == (0, "NAMESPACE\ndefault\nkube-system\n")
    as_json = run_flowscope("list", "namespaces", "-o", "json", "--server", server.target, env=cli_env)
    assert json.loads(as_json.stdout) == [{"namespace": "default"}, {"namespace": "kube-system"}]
