"""A packet-path session started from `top` (key `s`): the screen steps aside, `flowscope trace` runs in the
terminal as if typed, and a key brings the screen back.

The session is the command the opened connection's panel names (flowpanel.trace_arguments) with the server `top`
reads from (ServerOptions.flags), parsed by trace's own parser, so it is the same session, the same output and
the same errors as typing it: htop's `s` (strace on the selected process) for connections. It runs in this
process, on the ordinary screen, while top's stream goes on counting, so the table is current when it comes back.

Signals while it runs: Ctrl-C ends the session (as it ends `flowscope trace`), not top; SIGTERM ends both. A
session needs an agent's write side (its unix socket, or mutual TLS, or a relay over those); a read-only port
refuses it with the reason, which is shown like any other error of the command.
"""

from __future__ import annotations

import argparse
import signal
import termios
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from flowscope.cli.connection import ServerOptions
from flowscope.cli.errors import CliError
from flowscope.cli.interrupts import EXIT_CODE, Interrupts
from flowscope.cli.top.keys import RawTerminal, read_keys
from flowscope.cli.trace import command as trace

BACK = "session ended · any key: back to top · q: quit top"
WAIT_S = 0.2  # a wait for the key looks at `stopped` this often


def command_line(arguments: list[str], options: ServerOptions) -> list[str]:
    """`flowscope trace` arguments for a connection's filter flags, on top's server."""
    return [*arguments, *options.flags()]


class _Parser(argparse.ArgumentParser):
    """argparse that says what it refuses as a CliError line instead of ending the process: top is still
    running around the session."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"flowscope trace: {message}")


def parse(arguments: list[str]) -> argparse.Namespace:
    """trace's flags as trace reads them."""
    parser = _Parser(prog="flowscope")
    trace.register(parser.add_subparsers())
    return parser.parse_args(["trace", *arguments])


def run(arguments: list[str], options: ServerOptions, console: Console, fd: int, top: Interrupts) -> int | None:
    """Run the session on the ordinary screen, then wait for a key: None to go back to the screen (any key),
    or top's exit code (`q` or the end of input: 0; a SIGTERM that came to the session, or a signal to `top`
    while it waited: EXIT_CODE)."""
    console.print(Text("flowscope trace " + " ".join(arguments), style="bold"))
    with Interrupts() as interrupts:  # the session's own: a Ctrl-C ends it and leaves top's untouched
        try:
            trace.follow(parse(command_line(arguments, options)), interrupts)
        except CliError as exc:
            console.print(Text(exc.message, style="bold red"))
    if interrupts.signum == signal.SIGTERM:
        return EXIT_CODE
    console.print(Text(BACK, style="reverse"))
    with RawTerminal(fd):
        termios.tcflush(fd, termios.TCIFLUSH)  # keys typed while the session ran are not the answer
        while not top.stopped:
            keys = read_keys(fd, WAIT_S)
            if {"q", "Q", "eof", "ctrl-c"} & set(keys):
                return 0
            if keys:
                return None
    return EXIT_CODE
