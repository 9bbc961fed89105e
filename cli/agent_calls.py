"""Calling the agents' own Control service (policy, settings): which agents, and every failure as one line.

Policy and settings belong to each node's agent; a relay does not serve them. With no --server, a lab that is
up (the lab named `lab`, or --lab NAME) has every one of its agents asked, so one command changes the whole
lab, each line of the answer naming its node; --server asks one agent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc

from flowscope.api.control import control_pb2_grpc
from flowscope.cli.connection import Connection, ServerOptions, add_server_flags, connect
from flowscope.cli.errors import CliError
from flowscope.lab.state import LabState
from flowscope.lab.topology import LABS_DIR, validate_name

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
    if code == grpc.StatusCode.PERMISSION_DENIED:  # an agent's read-only port: the reason says where to go
        return CliError(f"{connection.target}: {exc.details()}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        return CliError(str(exc.details()))  # the agent's reason: a bad request, or what the agent lacks
    return connection.error(exc)
