"""Errors the command line reports to a person: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """Something the user can act on; `main` prints it as one line and exits with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    """The flags do not make sense together; exits 2, like argparse does for a bad flag."""

    exit_code = 2
