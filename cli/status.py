"""`flowscope status`: is the server healthy, and how full is its flow buffer (hubble status).

Like hubble, it asks the standard gRPC health service about `hubble.server.Observer` first and only then for
the observer's ServerStatus; flowscope servers also report events they lost, which are shown when non-zero,
and each flow-log and history exporter they run (a relay: every node's, and its own ClickHouse writer's).
"""

from __future__ import annotations

import argparse
import json

import grpc
from google.protobuf import json_format

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.connection import Connection, ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.cli.printer.tabwriter import align
from flowscope.cli.timefmt import format_duration

OBSERVER_SERVICE = "hubble.server.Observer"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="server health and flow counts (hubble status)",
        description=__doc__,
        allow_abbrev=False,
    )
    parser.add_argument(
        "-o",
        "--output",
        default="compact",
        choices=("compact", "dict", "json", "jsonpb", "table"),
        help="format",
    )
    add_server_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with connect(ServerOptions.from_args(args)) as connection:
        healthy, health = check_health(connection)
        if args.output == "compact":
            print(f"Healthcheck (via {connection.target}): {health}", flush=True)
        if not healthy:
            raise CliError(f"{connection.target} is not healthy: {health}")
        try:
            status = observer_pb2_grpc.ObserverStub(connection.channel).ServerStatus(
                observer_pb2.ServerStatusRequest(), timeout=connection.options.request_timeout
            )
        except grpc.RpcError as exc:
            raise connection.error(exc) from None
    print(format_status(status, args.output))
    return 0


def check_health(connection: Connection) -> tuple[bool, str]:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest(service=OBSERVER_SERVICE)
    try:
        response = health_pb2_grpc.HealthStub(connection.channel).Check(
            request, timeout=connection.options.request_timeout
        )
    except grpc.RpcError as exc:
        raise connection.error(exc) from None
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return False, f"Unavailable: {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
    return True, "Ok"


def _flows_per_second(status: observer_pb2.ServerStatusResponse, fallback: bool) -> str:
    if status.flows_rate > 0:
        return f"{status.flows_rate:.2f}"
    uptime = status.uptime_ns / 1e9
    return f"{status.seen_flows / uptime:.2f}" if fallback and uptime > 0 else "N/A"


def _optional(value: observer_pb2.ServerStatusResponse, field: str) -> str:
    return str(getattr(value, field).value) if value.HasField(field) else "N/A"


def format_status(status: observer_pb2.ServerStatusResponse, output: str) -> str:
    """The status in hubble's layouts (compact, dict, table, json)."""
    if output in ("json", "jsonpb"):
        return json.dumps(json_format.MessageToDict(status, preserving_proto_field_name=True), separators=(",", ":"))
    rows = [
        ("NUM FLOWS", f"{status.num_flows:,}"),
        ("MAX FLOWS", f"{status.max_flows:,}"),
        ("SEEN FLOWS", f"{status.seen_flows:,}"),
        ("FLOWS PER SECOND", _flows_per_second(status, fallback=False)),
        ("UPTIME", format_duration(status.uptime_ns / 1e9)),
        ("NUM CONNECTED NODES", _optional(status, "num_connected_nodes")),
        ("NUM UNAVAILABLE NODES", _optional(status, "num_unavailable_nodes")),
        ("VERSION", status.version),
    ]
    if output == "table":
        return "\n".join(align([[key for key, _ in rows], [value for _, value in rows]]))
    if output == "dict":
        return "\n".join(f"{key.replace('UNAVAILABLE', 'UNAVAIL.'):>19}: {value}" for key, value in rows)
    return _compact(status)


def _compact(status: observer_pb2.ServerStatusResponse) -> str:
    ratio = f" ({status.num_flows / status.max_flows * 100:.2f}%)" if status.max_flows else ""
    lines = [
        f"Current/Max Flows: {status.num_flows:,}/{status.max_flows:,}{ratio}",
        f"Flows/s: {_flows_per_second(status, fallback=True)}",
    ]
    connected = status.num_connected_nodes.value if status.HasField("num_connected_nodes") else None
    unavailable = status.num_unavailable_nodes.value if status.HasField("num_unavailable_nodes") else None
    if connected is not None:
        total = f"/{connected + unavailable}" if unavailable is not None else ""
        lines.append(f"Connected Nodes: {connected}{total}")
    if unavailable:
        names = sorted(status.unavailable_nodes)
        if unavailable > len(names) and names:
            names.append(f"and {unavailable - len(names)} more...")
        lines.append(f"Unavailable Nodes: {unavailable}")
        lines += [f"  - {name}" for name in names]
    lines += _lost_lines(status.flowscope_lost)
    lines += _l7_lines(status.flowscope_l7)
    lines += [
        _exporter_line(exporter, status.HasField("num_connected_nodes")) for exporter in status.flowscope_exporters
    ]
    return "\n".join(lines)


def _exporter_line(exporter: observer_pb2.ExporterStatus, many_nodes: bool) -> str:
    """One exporter: where it writes, what became of its flows, its sink's figures; what went wrong first."""
    where = f" on {exporter.node_name}" if many_nodes and exporter.node_name else ""
    head = f"Exporter {exporter.name}{where} ({exporter.kind} {exporter.target})"
    if exporter.kind == "clickhouse":
        sink = [
            f"{exporter.rows_stored:,} rows stored",
            f"{exporter.rows_buffered:,} buffered",
            f"{exporter.rows_lost:,} lost",
            f"{exporter.failed_inserts:,} failed inserts",
        ]
    else:
        sink = [f"{exporter.bytes_written / 1e6:.1f} MB written", f"{exporter.rotations:,} rotations"]
    problems = _counts(
        ("dropped (queue full)", exporter.flows_dropped),
        ("failed", exporter.flows_failed),
        ("lost events reported", exporter.lost_events),
    )
    stopped = "STOPPED; " if exporter.stopped else ""
    flows = f"{exporter.flows_exported:,} flows exported, {exporter.flows_filtered:,} filtered out"
    return f"{head}: {stopped}{', '.join([flows, *problems])}; {', '.join(sink)}"


def _l7_lines(l7: observer_pb2.L7Status) -> list[str]:
    """What became of L7 messages and how full the L7 store is, once the agent has made any."""
    if not l7.messages and not l7.not_l7:
        return []
    problems = _counts(
        ("not L7", l7.not_l7),
        ("unpaired", l7.unpaired),
        ("requests unanswered", l7.dropped),
        ("sent without L7 fields", l7.evicted),
    )
    more = f" ({', '.join(problems)})" if problems else ""
    store = f"{l7.stored:,}/{l7.capacity:,} stored, {l7.memory_bytes / 1e6:.1f} MB"
    return [f"L7 Messages: {l7.messages:,}{more}; {store}"]


def _counts(*counted: tuple[str, int]) -> list[str]:
    """`12 failed` for each count that is not zero: a status line names only what went wrong."""
    return [f"{count:,} {what}" for what, count in counted if count]


def _lost_lines(lost: observer_pb2.LostCounts) -> list[str]:
    """flowscope's lost-event counts by where they were lost, only when there are any."""
    parts = [
        f"{what} {count:,}"
        for what, count in (
            ("kernel buffer", lost.kernel_buffer),
            ("agent queue", lost.agent_queue),
            ("ring overrun", lost.ring_overrun),
        )
        if count
    ]
    lines = [f"Lost Events: {', '.join(parts)}"] if parts else []
    if lost.rate_limited:
        lines.append(f"Rate-limited Drop Reports: {lost.rate_limited:,}")
    return lines
