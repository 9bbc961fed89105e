"""`--stall-timeout`, one flag of both servers that serve flow streams (`flowscope agent` and `flowscope relay`):
the same spelling, default and help in both, since common/streams.py applies it the same way in both."""

from __future__ import annotations

import argparse

from flowscope.cli.timefmt import positive_duration
from flowscope.common.streams import STALL_S


def add_stall_timeout(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Adds --stall-timeout (dest `stall_timeout`, seconds) to `parser`."""
    parser.add_argument(
        "--stall-timeout",
        type=positive_duration,
        default=STALL_S,
        metavar="DURATION",
        help="end a flow stream whose client has read nothing for this long, freeing its thread and buffers; "
        "that client gets the responses already sent to it, then CANCELLED: a synchronous gRPC server cannot "
        f"send a status to a client that does not read ({STALL_S:g}s)",
    )
