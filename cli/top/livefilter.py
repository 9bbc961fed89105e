"""The filter typed live in `flowscope top`: hubble's filter flags, read by `flowscope observe`'s own code.

The text is the filter flags as they would follow `flowscope observe` (`--from-pod default/client --verdict
DROPPED`). It is split like a shell would, parsed by a parser made with observe's `add_filter_flags` and turned
into a request by observe's `build_request`, so every flag, value check, conflict rule and error message is
observe's: nothing is reimplemented here.

It starts as the command line's filter flags (whose words observe's flags keep as they are parsed), so the
person edits the filter they launched with instead of stacking a second one on it: two lists of FlowFilters
cannot be ANDed in general (within a field values are ORed), but one edited line always can be parsed.
"""

from __future__ import annotations

import argparse
import copy
import shlex
from typing import NoReturn

from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import CliError, UsageError
from flowscope.cli.observe.flags import FILTER_ATTRIBUTE, add_filter_flags, filter_words
from flowscope.cli.observe.request import build_request

BACKFILL = "40s"  # what a new stream asks for first: the longest rate window, so every column fills at once


class FilterError(ValueError):
    """The typed filter does not parse; the message is observe's (argparse's or the filter builder's)."""


def initial_text(args: argparse.Namespace) -> str:
    """The command line's filters as one editable line (filter flags in order, then raw allow/deny lists)."""
    words = filter_words(args)
    for flag in ("allowlist", "denylist"):
        for text in getattr(args, flag, []):
            words += [f"--{flag}", text]
    return shlex.join(words)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise FilterError(message)


class LiveFilter:
    """Parses filter text into the request a stream should make; one parser, made once, reused per key."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._parser = _Parser(prog="filter", add_help=False, allow_abbrev=False)
        add_filter_flags(self._parser)

    def request(self, text: str, backfill: str | None = BACKFILL) -> observer_pb2.GetFlowsRequest:
        """A following request for these filters; FilterError with observe's message when they are wrong.

        `backfill` asks for the flows since that long ago first (None: only new ones, used when a broken
        stream is resumed so nothing is counted twice)."""
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise FilterError(str(exc).lower()) from None
        parsed = self._parser.parse_args(words)
        args = copy.copy(self._args)
        setattr(args, FILTER_ATTRIBUTE, getattr(parsed, FILTER_ATTRIBUTE, None))
        args.allowlist, args.denylist = parsed.allowlist, parsed.denylist
        args.follow = True
        args.first, args.last, args.all, args.until = 0, 0, False, None
        args.since = backfill
        try:
            return build_request(args)
        except CliError as exc:
            raise FilterError(exc.message) from None

    def error(self, text: str) -> str | None:
        """Why the text is not a valid filter, or None: checked at every key the person types."""
        try:
            self.request(text)
        except FilterError as exc:
            return str(exc)
        return None


def initial_request(args: argparse.Namespace) -> observer_pb2.GetFlowsRequest:
    """The first stream's request: the command line as `observe --follow` reads it, with the last 40 s
    first when it chose no flows of its own (--last, --all, --since), so the rate columns start full."""
    for flag in ("first", "until"):  # both ask for flows that end: top never does
        if getattr(args, flag):
            raise UsageError(f"--{flag} does not go with top, which follows new flows (try --last or --since)")
    args = copy.copy(args)
    args.follow = True
    if not (args.last or args.all or args.since):
        args.since = BACKFILL
    return build_request(args)
