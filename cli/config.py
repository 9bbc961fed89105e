"""`flowscope config get|set`: an agent's runtime settings, read and changed while it runs.

    flowscope config get                                   # every setting
    flowscope config get monitor-aggregation
    flowscope config set monitor-aggregation none          # from the next packet on; no program is reloaded
    flowscope config set monitor-aggregation-interval 1s
    flowscope config set monitor-aggregation-flags syn,fin,rst,psh

The same names and values as the agent's flags (--monitor-aggregation ...), which this module also defines: both
take them from flowscope.common.aggregation, as the agent does.

Settings belong to each node's agent (a relay does not serve them). With no --server, a lab that is up (the
lab named `lab`, or --lab NAME) has every one of its agents asked, so one command changes the whole lab, each
line of the answer naming its node; --server asks one agent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
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
from flowscope.lab.state import LabState
from flowscope.lab.topology import LABS_DIR, validate_name


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
    add_agent_target_flags(get)
    get.set_defaults(run=run_get)
    put = commands.add_parser("set", help="change a setting", allow_abbrev=False)
    put.add_argument("key", choices=KEYS, help="the setting")
    put.add_argument(
        "value",
        help="its new value: a level (none, lowest, low, medium, maximum), a duration (5s) or TCP flags "
        "(syn,fin,rst,psh or all), as the agent's flag of the same name takes",
    )
    add_agent_target_flags(put)
    put.set_defaults(run=run_set)


DEFAULT_LAB = "lab"
Call = Callable[[control_pb2_grpc.ControlStub, float], Any]


def add_agent_target_flags(parser: argparse.ArgumentParser) -> None:
    """--server for one agent, or --lab for every agent of a lab (the default when a lab is up)."""
    add_server_flags(parser)
    parser.add_argument(
        "--lab",
        metavar="NAME",
        help=f"every agent of this lab (default, without --server: the lab {DEFAULT_LAB!r} when it is up)",
    )


def agent_targets(args: argparse.Namespace) -> dict[str, ServerOptions]:
    """Whom to ask, by node ("" when it is one server the user chose, or the default server)."""
    options = ServerOptions.from_args(args)
    if options.chosen and args.lab:
        raise CliError("--server and --lab: give one (--server asks one agent, --lab every agent of a lab)")
    if options.chosen:
        return {"": options}
    try:
        name = validate_name(args.lab or DEFAULT_LAB)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    state = LabState.load(LABS_DIR / name / "state.json")
    if state and state.agents:
        return {node: replace(options, server=f"unix://{path}", chosen=True) for node, path in state.agents.items()}
    if args.lab:
        raise CliError(f"lab {name!r} has no agents: is it up? (flowscope lab status --name {name})")
    return {"": options}


def control_calls(args: argparse.Namespace, call: Call) -> dict[str, Any]:
    """The answer of every agent agent_targets names, in node order; the first failure becomes one CliError line
    that names the node, and the nodes already done (a policy applied to some nodes must not go unsaid)."""
    answers: dict[str, Any] = {}
    for node, options in sorted(agent_targets(args).items()):
        try:
            answers[node] = _call(options, call)
        except CliError as exc:
            done = f" (done on {', '.join(answers)} already)" if answers else ""
            raise CliError(f"{node}: {exc.message}{done}" if node else exc.message) from None
    return answers


def _call(options: ServerOptions, call: Call) -> Any:
    """Every way of failing becomes one CliError line."""
    with connect(options) as connection:
        try:
            return call(control_pb2_grpc.ControlStub(connection.channel), connection.options.request_timeout)
        except grpc.RpcError as exc:
            raise control_error(connection, exc) from None


def by_node(node: str, several: bool, line: str) -> str:
    """A line of one agent's answer, named by its node when several agents answered."""
    return f"{node}: {line}" if several and node else line


def control_error(connection: Connection, exc: grpc.RpcError) -> CliError:
    code = exc.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CliError(f"{connection.target} does not serve flowscope.control (a relay?): point --server at an agent")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        return CliError(str(exc.details()))
    return connection.error(exc)


def print_settings(answers: dict[str, control_pb2.ConfigResponse], key: str | None = None) -> None:
    several = len(answers) > 1
    for node, response in answers.items():
        for setting in response.settings:
            if key is None:
                print(by_node(node, several, f"{setting.key:<30} {setting.value}"))
            elif setting.key == key:
                print(by_node(node, several, setting.value))


def run_get(args: argparse.Namespace) -> int:
    answers = control_calls(args, lambda stub, t: stub.GetConfig(control_pb2.GetConfigRequest(), timeout=t))
    print_settings(answers, args.key)
    return 0


def run_set(args: argparse.Namespace) -> int:
    request = control_pb2.SetConfigRequest(key=args.key, value=args.value)
    print_settings(control_calls(args, lambda stub, t: stub.SetConfig(request, timeout=t)))
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
