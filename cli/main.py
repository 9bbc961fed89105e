"""Entry point of the `flowscope` command.

Each command lives in its own module that exposes `register(subparsers)`, which adds its parser and sets
`run(args) -> int` as the parser's default. A command's module is imported only when that command runs, so
`flowscope observe` pays for its own imports and not for numpy, rich and the agent's code that other commands
need (start-up is part of every `observe --last N`). What needs every command (`flowscope --help`, a word that
names none) imports them all, by name: a module that fails to import fails them at once, with its traceback,
instead of quietly leaving its command out.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

from flowscope.cli.errors import CliError

# Every command's name and module, in the order `flowscope --help` lists them.
COMMANDS = {
    "observe": "flowscope.cli.observe",
    "trace": "flowscope.cli.trace.command",
    "status": "flowscope.cli.status",
    "list": "flowscope.cli.listing",
    "agent": "flowscope.cli.agent",
    "lab": "flowscope.cli.lab",
    "relay": "flowscope.cli.relay",
    "demo": "flowscope.cli.demo",
    "policy": "flowscope.cli.policy",
    "config": "flowscope.cli.config",
    "bpf": "flowscope.cli.bpf",
    "ct": "flowscope.cli.ct",
    "top": "flowscope.cli.top",
    "map": "flowscope.cli.map",
}


class Command(Protocol):
    """A command module: it adds its parser, whose default `run` does the work."""

    def register(self, subparsers: argparse._SubParsersAction) -> None: ...


def commands(argv: Sequence[str] = ()) -> tuple[Command, ...]:
    """The command `argv` runs, or every command when it names none (`--help`, a mistyped name: the parser
    then lists them all). Imported here rather than at the top, so that main() has quieted gRPC before any of
    them imports it."""
    names = argv[:1] if argv[:1] and argv[0] in COMMANDS else list(COMMANDS)
    return tuple(importlib.import_module(COMMANDS[name]) for name in names)


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
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in commands() if modules is None else modules:
        module.register(subparsers)
    return parser


class _Version(argparse._VersionAction):
    """--version, reading the installed package's metadata only when asked (~30 ms at every start otherwise)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from flowscope.common.version import VERSION

        self.version = f"%(prog)s {VERSION}"
        super().__call__(parser, *args, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs handshake failures and the like straight to stderr; errors are reported here, in
    # one line, so keep its own output to real errors (before any command module imports grpc).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands(argv))
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
