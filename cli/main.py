"""Entry point of the `flowscope` command.

Each command lives in its own module that exposes `register(subparsers)`, which adds its parser and sets
`run(args) -> int` as the parser's default. The modules are imported by name in `commands()`, so one that fails
to import fails `flowscope` at once, with its traceback, instead of quietly leaving its command out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol

from flowscope.cli.errors import CliError
from flowscope.common.version import VERSION


class Command(Protocol):
    """A command module: it adds its parser, whose default `run` does the work."""

    def register(self, subparsers: argparse._SubParsersAction) -> None: ...


def commands() -> tuple[Command, ...]:
    """Every command, in the order `flowscope --help` lists them. Imported here rather than at the top, so that
    main() has quieted gRPC before any of them imports it."""
    from flowscope.cli import agent, bpf, config, ct, demo, lab, listing, observe, policy, relay, status, top
    from flowscope.cli.trace import command as trace

    return (observe, trace, status, listing, agent, lab, relay, demo, policy, config, bpf, ct, top)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (with where to find help), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(modules: Sequence[Command] | None = None) -> ArgumentParser:
    parser = ArgumentParser(
        prog="flowscope",
        description="Network flow observability on real eBPF, Hubble-style.",
        allow_abbrev=False,
    )
    # The version the agent and relay report in ServerStatus, so a CLI and a server can be compared.
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in commands() if modules is None else modules:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs handshake failures and the like straight to stderr; errors are reported here, in
    # one line, so keep its own output to real errors (before any command module imports grpc).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args))
    except CliError as exc:
        print(f"{parser.prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`flowscope observe | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
