"""`flowscope ct`: the connections each node's datapath tracks, with the service translation they went through.

    flowscope ct                          # per node: every connection, the most recently active first
    flowscope ct --service web/web        # those translated for a service: the ClusterIP asked, the backend used
    flowscope ct --ip 10.0.1.5 --port 80 --protocol tcp
    flowscope ct -o json                  # one JSON document (by node when several agents answered)

A row is one conntrack entry: the tuple as the client sent it (to the ClusterIP:port of a service), the
backend it was translated to (`-` when it was not translated on that node), the service, the state (new until
a reply, established, closing after FIN or RST, expired until the agent's sweep takes it), the time since its
last packet (to within a second), packets and bytes each way (client's -> / <- reply), the policy verdict and
where the datapath saw each way. An address or port filter matches either end, as sent or as translated.

With no --server, a lab that is up (the lab named `lab`, or --lab NAME) has every one of its agents asked.
"""

from __future__ import annotations

import argparse
import json

from google.protobuf import json_format

from flowscope.api.control import control_pb2
from flowscope.cli.agent_calls import add_agent_target_flags, control_calls
from flowscope.cli.policy import _protocol as protocol_number
from flowscope.cli.printer.tabwriter import align
from flowscope.cli.timefmt import format_duration
from flowscope.common.names import POLICY_PROTOCOL_NAMES

HEADER = (
    "PROTO",
    "SOURCE",
    "DESTINATION",
    "BACKEND",
    "SERVICE",
    "STATE",
    "AGE",
    "IDLE",
    "->",
    "<-",
    "VERDICT",
    "HOOKS",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ct",
        help="the datapath's connections and their service translation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--ip", default="", help="either end's address, as sent or as translated")
    parser.add_argument("--port", type=_port, default=0, help="either end's port, as sent or as translated")
    parser.add_argument("--protocol", type=protocol_number, default=0, help="tcp, udp, sctp, icmp, icmpv6 or a number")
    parser.add_argument("--service", default="", metavar="NAMESPACE/NAME", help="only connections to this service")
    parser.add_argument("--limit", type=_count, default=0, help="at most this many per node (the most recent)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="format (table)")
    add_agent_target_flags(parser)
    parser.set_defaults(run=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return int(text)


def run(args: argparse.Namespace) -> int:
    request = control_pb2.ListConnectionsRequest(
        ip=args.ip, port=args.port, protocol=args.protocol, service=args.service, limit=args.limit
    )
    answers = control_calls(args, lambda stub, t: stub.ListConnections(request, timeout=t))
    if args.output == "json":
        found = {node or answer.node: _as_dict(answer) for node, answer in answers.items()}
        print(json.dumps(found if len(found) > 1 else next(iter(found.values())), indent=2))
        return 0
    several = len(answers) > 1
    rows: list[tuple[str, ...]] = [(("NODE",) if several else ()) + HEADER]
    for node, answer in answers.items():
        for connection in answer.connections:
            rows.append(((node or answer.node,) if several else ()) + row(connection))
    print("\n".join(align(rows)))
    return 0


def _as_dict(answer: control_pb2.ConnectionList) -> dict:
    return json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def row(connection: control_pb2.Connection) -> tuple[str, ...]:
    """One connection as a table row."""
    original, translated = connection.original, connection.translated
    backend = _end(translated.destination_ip, translated.destination_port) if connection.HasField("translated") else "-"
    return (
        POLICY_PROTOCOL_NAMES.get(connection.protocol, str(connection.protocol)),
        _end(original.source_ip, original.source_port),
        _end(original.destination_ip, original.destination_port),
        backend,
        connection.service or "-",
        connection.state,
        format_duration(connection.age.ToTimedelta().total_seconds()),
        format_duration(connection.idle.ToTimedelta().total_seconds()),
        _counts(connection.forward),
        _counts(connection.reply),
        (f"{connection.verdict} ({connection.rule})" if connection.rule else connection.verdict) or "-",
        f"{_hook(connection.forward)} / {_hook(connection.reply)}",
    )


def _end(ip: str, port: int) -> str:
    address = f"[{ip}]" if ":" in ip else ip
    return f"{address}:{port}" if port else address


def _counts(direction: control_pb2.ConnectionDirection) -> str:
    return f"{direction.packets} pkts {direction.bytes} B"


def _hook(direction: control_pb2.ConnectionDirection) -> str:
    if not direction.ifindex:
        return "-"
    return f"{direction.device or f'ifindex {direction.ifindex}'} {direction.point}"
