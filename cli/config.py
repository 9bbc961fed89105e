"""`flowscope config get|set`: an agent's runtime settings, read and changed while it runs.

    flowscope config get                                   # every setting
    flowscope config get monitor-aggregation
    flowscope config set monitor-aggregation none          # from the next packet on; no program is reloaded
    flowscope config set monitor-aggregation-interval 1s
    flowscope config set monitor-aggregation-flags syn,fin,rst,psh

The same names and values as the agent's flags (--monitor-aggregation ...), which this module also defines: both
take them from flowscope.common.aggregation, as the agent does.

Settings belong to each node's agent (a relay does not serve them); cli/agent_calls.py says which agents are
asked: with no --server, every agent of a lab that is up.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from flowscope.api.control import control_pb2
from flowscope.cli.agent_calls import add_agent_target_flags, by_node, control_calls
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
