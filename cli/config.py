"""`flowscope config get|set`: an agent's runtime settings, read and changed while it runs.

    flowscope config get                                   # every setting
    flowscope config get monitor-aggregation
    flowscope config set monitor-aggregation none          # from the next packet on; no program is reloaded
    flowscope config set monitor-aggregation-interval 1s
    flowscope config set monitor-aggregation-flags syn,fin,rst,psh

The same names and values as the agent's flags (--monitor-aggregation ...), which this module also defines: both
take them from flowscope.common.aggregation, as the agent does.
Settings belong to one node's agent: point --server at it (a relay does not serve them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import grpc

from flowscope.api.control import control_pb2, control_pb2_grpc
from flowscope.cli.connection import Connection, ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.common.aggregation import (
    DEFAULTS,
    FLAGS_KEY,
    INTERVAL_KEY,
    KEYS,
    LEVEL_KEY,
    PARSERS,
    AggregationSettings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="read or change an agent's runtime settings (monitor aggregation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    get = commands.add_parser("get", help="show settings", allow_abbrev=False)
    get.add_argument("key", nargs="?", choices=KEYS, help="one setting (default: all)")
    add_server_flags(get)
    get.set_defaults(run=run_get)
    put = commands.add_parser("set", help="change a setting", allow_abbrev=False)
    put.add_argument("key", choices=KEYS)
    put.add_argument("value")
    add_server_flags(put)
    put.set_defaults(run=run_set)


def control_call(args: argparse.Namespace, call: Callable[[control_pb2_grpc.ControlStub, float], Any]) -> Any:
    """Call the agent's flowscope.control service; every way of failing becomes one CliError line."""
    with connect(ServerOptions.from_args(args)) as connection:
        try:
            return call(control_pb2_grpc.ControlStub(connection.channel), connection.options.request_timeout)
        except grpc.RpcError as exc:
            raise control_error(connection, exc) from None


def control_error(connection: Connection, exc: grpc.RpcError) -> CliError:
    code = exc.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CliError(f"{connection.target} does not serve flowscope.control (a relay?): point --server at an agent")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        return CliError(str(exc.details()))
    return connection.error(exc)


def print_settings(response: control_pb2.ConfigResponse, key: str | None = None) -> None:
    for setting in response.settings:
        if key is None:
            print(f"{setting.key:<30} {setting.value}")
        elif setting.key == key:
            print(setting.value)


def run_get(args: argparse.Namespace) -> int:
    response = control_call(args, lambda stub, t: stub.GetConfig(control_pb2.GetConfigRequest(), timeout=t))
    print_settings(response, args.key)
    return 0


def run_set(args: argparse.Namespace) -> int:
    request = control_pb2.SetConfigRequest(key=args.key, value=args.value)
    response = control_call(args, lambda stub, t: stub.SetConfig(request, timeout=t))
    print_settings(response)
    return 0


# The agent's flags for the same settings (`flowscope agent --monitor-aggregation ...`).


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that refuses a bad value with the parser's own one-line message, keeping the text."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("monitor aggregation and policy")
    helps = {
        LEVEL_KEY: ("LEVEL", "none, lowest, low, medium or maximum (%(default)s)"),
        INTERVAL_KEY: ("DURATION", "how often a busy connection reports at medium and above (%(default)s)"),
        FLAGS_KEY: ("FLAGS", "TCP flags reported when first seen each way, at medium and above (%(default)s; or all)"),
    }
    for key, (metavar, text) in helps.items():
        group.add_argument(f"--{key}", default=DEFAULTS[key], type=_checked(PARSERS[key]), metavar=metavar, help=text)
    group.add_argument("--policy-file", metavar="FILE", help="a network policy (YAML) to enforce from the start")


def agent_settings(args: argparse.Namespace) -> dict[str, Any]:
    """AgentConfig's fields from the flags add_agent_flags defined."""
    from pathlib import Path

    aggregation = AggregationSettings.parse(
        args.monitor_aggregation, args.monitor_aggregation_interval, args.monitor_aggregation_flags
    )
    return {"aggregation": aggregation, "policy_file": Path(args.policy_file) if args.policy_file else None}
