"""`observe --input-file`: flows written by `observe -o jsonpb` read back, filtered and printed, no server asked.

Each line is one GetFlowsResponse in JSON, as flowscope and Hubble both write them. The request the flags make
is applied as a server would apply it: its filters (observer.filters.messages, Hubble's semantics over the
messages), since/until on each response's time, and --first/--last counting flows. Only flows are read back;
other responses in the file (lost events, node status) are skipped.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

from google.protobuf import json_format

from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import CliError, UsageError
from flowscope.cli.observe.request import ALL_FLOWS


def add_input_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-file",
        metavar="FILE",
        help="read flows from FILE ('-' for stdin), as `observe -o jsonpb` writes them, instead of asking a server",
    )


@contextmanager
def opened(path: str) -> Iterator[TextIO]:
    """The file to read, or stdin for '-'; one clear error when it cannot be opened."""
    if path == "-":
        yield sys.stdin
        return
    try:
        with open(path, encoding="utf-8") as file:
            yield file
    except OSError as exc:
        raise CliError(f"cannot read the input file {path}: {exc.strerror}") from None


def responses(
    lines: Iterable[str], request: observer_pb2.GetFlowsRequest, name: str = "input"
) -> Iterator[observer_pb2.GetFlowsResponse]:
    """The flow responses of `lines` the request selects, in the file's order."""
    # The filters (and numpy under them) are imported when a file is read: every `observe` builds this flag.
    from flowscope.observer.filters import FilterError
    from flowscope.observer.filters.messages import compile_flow_filters

    try:
        keep = compile_flow_filters(request.whitelist, request.blacklist)
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    since = request.since.ToNanoseconds() if request.HasField("since") else None
    until = request.until.ToNanoseconds() if request.HasField("until") else None

    def wanted(response: observer_pb2.GetFlowsResponse) -> bool:
        ns = (response.time if response.HasField("time") else response.flow.time).ToNanoseconds()
        in_time = (since is None or ns >= since) and (until is None or ns <= until)
        return in_time and keep(response.flow)

    selected = (r for r in _read(lines, name) if r.HasField("flow") and wanted(r))
    number = request.number
    if request.first:
        yield from itertools.islice(selected, number)
    elif number and number < ALL_FLOWS:
        yield from collections.deque(selected, maxlen=number)
    else:
        yield from selected


def _read(lines: Iterable[str], name: str) -> Iterator[observer_pb2.GetFlowsResponse]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json_format.Parse(line, observer_pb2.GetFlowsResponse(), ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            reason = str(exc)
            reason = reason if len(reason) <= 100 else reason[:100] + "..."
            raise CliError(f"{name}, line {number}: not a flow as `observe -o jsonpb` writes it: {reason}") from None
