"""Addresses as people write them in flags, checked once and turned into what gRPC takes.

A server listens on `host:port` (`:port` meaning every address, as Hubble's --listen-address does); a client or
the relay dials `host:port`, `unix:///path` or a bare `/path`. Checked where they are typed, so a typo is one
clear line at start, not a gRPC C-core log line or a node that fails later without a reason.
"""

from __future__ import annotations


def listen_target(address: str) -> str:
    """What to bind: `:4244` becomes `[::]:4244`; ValueError unless it is host:port."""
    _check_host_port(address, allow_empty_host=True)
    return f"[::]{address}" if address.startswith(":") else address


def dial_target(address: str) -> str:
    """What to dial: a bare socket path becomes unix://path (addresses from peers are taken as they come)."""
    return f"unix://{address}" if address.startswith("/") else address


def check_dial_address(address: str) -> str:
    """An address typed to be dialled, as it was; ValueError unless host:port or a unix socket."""
    if address.startswith("/") or address.startswith("unix:"):
        if not address.removeprefix("unix:").strip("/"):
            raise ValueError(f"{address!r} names no socket")
        return address
    _check_host_port(address, allow_empty_host=False)
    return address


def _check_host_port(address: str, allow_empty_host: bool) -> None:
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    valid_port = port.isascii() and port.isdigit() and int(port) <= 65535
    if not colon or not valid_port or (not host and not allow_empty_host) or any(c in host for c in "/ "):
        shown = address if len(address) <= 100 else address[:100] + "..."
        raise ValueError(f"{shown!r} is not host:port (e.g. localhost:4245, 10.0.0.1:4244, [::1]:4244)")
