"""`flowscope list nodes` and `flowscope list namespaces` (hubble list)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.relay import relay_pb2
from flowscope.cli.connection import ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.cli.printer.tabwriter import align
from flowscope.cli.timefmt import format_duration

NOT_AVAILABLE = "N/A"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list nodes or namespaces (hubble list)", allow_abbrev=False)
    kinds = parser.add_subparsers(title="what", metavar="WHAT")
    nodes = kinds.add_parser("nodes", aliases=["node"], help="nodes and their flow buffers", allow_abbrev=False)
    nodes.add_argument("-o", "--output", default="table", choices=("table", "wide", "json"), help="format")
    add_server_flags(nodes)
    nodes.set_defaults(run=run_nodes)
    namespaces = kinds.add_parser("namespaces", help="namespaces with recent flows", allow_abbrev=False)
    namespaces.add_argument("-o", "--output", default="table", choices=("table", "wide", "json"), help="format")
    add_server_flags(namespaces)
    namespaces.set_defaults(run=run_namespaces)
    parser.set_defaults(run=lambda _: _missing_kind(parser))


def _missing_kind(parser: argparse.ArgumentParser) -> int:
    raise CliError("say what to list: nodes or namespaces", exit_code=2)


def _call(args: argparse.Namespace, method: Callable[[observer_pb2_grpc.ObserverStub, float], Message]) -> Message:
    with connect(ServerOptions.from_args(args)) as connection:
        try:
            return method(observer_pb2_grpc.ObserverStub(connection.channel), connection.options.request_timeout)
        except grpc.RpcError as exc:
            raise connection.error(exc) from None


def _json_list(messages: list[Message]) -> str:
    return json.dumps([json_format.MessageToDict(m, preserving_proto_field_name=True) for m in messages], indent=2)


def run_nodes(args: argparse.Namespace) -> int:
    response = _call(args, lambda stub, timeout: stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=timeout))
    assert isinstance(response, observer_pb2.GetNodesResponse)
    nodes = sorted(response.nodes, key=lambda node: node.name)
    print(_json_list(list(nodes)) if args.output == "json" else "\n".join(node_table(nodes, args.output == "wide")))
    return 0


def node_table(nodes: list[observer_pb2.Node], wide: bool = False) -> list[str]:
    """NAME STATUS AGE FLOWS/S CURRENT/MAX-FLOWS (and VERSION ADDRESS TLS when wide), aligned."""
    header = ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
    rows = [[*header, *(["VERSION", "ADDRESS", "TLS"] if wide else [])]]
    for node in nodes:
        uptime = int(node.uptime_ns / 1e9 + 0.5)
        age = format_duration(uptime) if uptime > 0 else NOT_AVAILABLE
        rate = f"{node.seen_flows / uptime:.2f}" if uptime > 0 else NOT_AVAILABLE
        ratio = NOT_AVAILABLE
        if node.max_flows:
            ratio = f"{node.num_flows}/{node.max_flows} ({node.num_flows / node.max_flows * 100:6.2f}%)"
        row = [node.name, _state(node.state), age, rate, ratio]
        if wide:
            tls = ("Enabled" if node.tls.enabled else "Disabled") if node.HasField("tls") else NOT_AVAILABLE
            row += [node.version or NOT_AVAILABLE, node.address, tls]
        rows.append(row)
    return align(rows)


_STATES: dict[int, str] = {
    relay_pb2.NODE_CONNECTED: "Connected",
    relay_pb2.NODE_UNAVAILABLE: "Unavailable",
    relay_pb2.NODE_GONE: "Gone",
    relay_pb2.NODE_ERROR: "Error",
}


def _state(state: int) -> str:
    return _STATES.get(state, "Unknown")


def run_namespaces(args: argparse.Namespace) -> int:
    response = _call(
        args, lambda stub, timeout: stub.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=timeout)
    )
    assert isinstance(response, observer_pb2.GetNamespacesResponse)
    namespaces = list(response.namespaces)
    if args.output == "json":
        print(_json_list(list(namespaces)))
        return 0
    wide = args.output == "wide"
    rows = [["NAMESPACE", *(["CLUSTER"] if wide else [])]]
    rows += [[ns.namespace, *([ns.cluster] if wide and ns.cluster else [])] for ns in namespaces]
    print("\n".join(align(rows)))
    return 0
