"""`flowscope demo`: the whole thing at once — build a lab, start its agents, show its flows live.

Ctrl-C ends the live view and takes the lab down again, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from flowscope.cli.errors import CliError

DESCRIPTION = """\
Build a lab (flowscope lab up), start its agents and traffic, and show its flows live with
`flowscope observe --follow`; Ctrl-C stops the view and takes the lab down. Flags after -- go to observe:
  flowscope demo -- --protocol tcp --verdict DROPPED
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="build a lab with agents and traffic, show its flows live",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--name", default="demo", help="the lab's name (demo)")
    demo.add_argument("--nodes", type=int, default=1, help="number of nodes (1)")
    demo.add_argument("observe_args", nargs=argparse.REMAINDER, help="more `flowscope observe` flags, after --")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowscope.lab import Lab  # the lab's imports are only for this command

    lab = Lab(args.name, nodes=args.nodes, default_socket=True)
    server = f"unix://{lab.agent_socket('node1')}" if args.nodes == 1 else "localhost:4245"
    observe = ["observe", "--follow", "--server", server, *(a for a in args.observe_args if a != "--")]
    check_observe_flags(observe)
    try:
        print(f"building lab {args.name} ({args.nodes} node{'s' * (args.nodes > 1)}), starting agents ...", flush=True)
        lab.up(traffic=True, agent=True)
        print(f"flows from {server} (Ctrl-C to stop and take the lab down)", flush=True)
        with subprocess.Popen([sys.executable, "-m", "flowscope.cli.main", *observe]) as viewer:
            try:
                return viewer.wait()
            except KeyboardInterrupt:
                viewer.wait()
                return 0
    except (ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"demo: {exc}") from exc
    finally:
        lab.down()
        print(f'lab "{args.name}" is down', flush=True)


def check_observe_flags(argv: list[str]) -> None:
    """Refuse bad observe flags before anything is built, with observe's own one-line error (exit 2): parsed by
    observe's own parser, which checks each filter value as the agent does (common/filter_values.py), and made
    into its request."""
    from flowscope.cli import observe
    from flowscope.cli.main import build_parser
    from flowscope.cli.observe.request import build_request

    build_request(build_parser([observe]).parse_args(argv))
