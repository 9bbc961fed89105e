"""Entry point of the `flowscope` command.

Each command lives in its own module that exposes `register(subparsers)`, which adds its parser and sets
`run(args) -> int` as the parser's default. The modules are found by name, so one that has not landed yet is
simply left out and the others still work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from flowscope.cli.errors import CliError

COMMAND_MODULES = (
    "flowscope.cli.observe",
    "flowscope.cli.status",
    "flowscope.cli.listing",
    "flowscope.cli.agent",
    "flowscope.cli.lab",
    "flowscope.cli.relay",
    "flowscope.cli.demo",
    "flowscope.cli.policy",
    "flowscope.cli.config",
    "flowscope.cli.top",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (with where to find help), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Broken:
    """Stands in for a command module that exists but fails to import: its command reports the failure in
    one line when run, and the other commands keep working meanwhile."""

    def __init__(self, name: str, error: Exception) -> None:
        self.command = name.rsplit(".", 1)[-1]
        self.error = error

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(
            self.command, help=f"(unavailable: {self.error})", add_help=False, prefix_chars="\0"
        )
        parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)  # any flags: the error says why
        parser.set_defaults(run=self.run)

    def run(self, args: argparse.Namespace) -> int:
        raise CliError(f"the {self.command} command cannot load: {type(self.error).__name__}: {self.error}")


def command_modules(names: Sequence[str] = COMMAND_MODULES) -> list[ModuleType | _Broken]:
    """The command modules that exist; a module that is not there yet is skipped."""
    modules: list[ModuleType | _Broken] = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                modules.append(_Broken(name, exc))
        except ImportError as exc:
            modules.append(_Broken(name, exc))
    return modules


def build_parser(modules: Sequence[ModuleType | _Broken] | None = None) -> ArgumentParser:
    parser = ArgumentParser(
        prog="flowscope",
        description="Network flow observability on real eBPF, Hubble-style.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in command_modules() if modules is None else modules:
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
