"""`flowscope demo`: the whole thing at once — build a lab, start its agents, show its flows live.

Ctrl-C ends the live view and takes the lab down again, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from flowscope.cli.errors import CliError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="build a lab with agents and traffic, show its flows live")
    demo.add_argument("--name", default="demo", help="the lab's name (demo)")
    demo.add_argument("--nodes", type=int, default=1, help="number of nodes (1)")
    demo.add_argument("observe_args", nargs=argparse.REMAINDER, help="more `flowscope observe` flags, after --")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowscope.lab import Lab  # the lab's imports are only for this command

    lab = Lab(args.name, nodes=args.nodes, default_socket=True)
    try:
        print(f"building lab {args.name} ({args.nodes} node{'s' * (args.nodes > 1)}), starting agents ...", flush=True)
        lab.up(traffic=True, agent=True)
        server = f"unix://{lab.agent_socket('node1')}" if args.nodes == 1 else "localhost:4245"
        extra = [a for a in args.observe_args if a != "--"]
        print(f"flows from {server} (Ctrl-C to stop and take the lab down)", flush=True)
        observe = [sys.executable, "-m", "flowscope.cli.main", "observe", "--follow", "--server", server, *extra]
        with subprocess.Popen(observe) as viewer:
            try:
                viewer.wait()
            except KeyboardInterrupt:
                viewer.wait()
    except (ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"demo: {exc}") from exc
    finally:
        lab.down()
        print(f"lab {args.name} is down", flush=True)
    return 0
