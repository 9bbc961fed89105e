"""The datapath's connections as a person reads them (`flowscope ct`): each conntrack entry oriented from its
client, with the service translation it went through on this node.

Conntrack runs after the load-balancing stage, so a translated connection's key holds the backend; the entry's
`frontend` (lb.h fs_lb_remember) names the frontend it was translated for, and the reverse-NAT entry the
translation left (`lb_reverse`) says which frontend address and port this client asked for. Without a reverse
entry (the LRU let it go) the frontend table answers for the frontend's address.

The entry keeps when it was made (in seconds: the age) but not its last packet: only when it expires, which every
packet moves to now + the lifetime of the connection's state (by a second or more, conntrack.h), so the time since
the last packet is that lifetime minus what is left of it, to within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowscope.common.names import IPPROTO_TCP
from flowscope.observer.datapath.c_source import header_define
from flowscope.observer.datapath.conntrack import (
    CT_F_DENIED,
    CT_F_JUDGED,
    REPLY,
    Connection,
    ConntrackTable,
    Direction,
    monotonic_ns,
)
from flowscope.observer.datapath.lbmaps import Frontend, LbMaps, ReverseEntry

_SECOND_NS = 1_000_000_000
LIFETIME_TCP_NS = header_define("config.h", "FS_CT_LIFETIME_TCP") * _SECOND_NS
LIFETIME_NONTCP_NS = header_define("config.h", "FS_CT_LIFETIME_NONTCP") * _SECOND_NS
SYN_TIMEOUT_NS = header_define("config.h", "FS_CT_SYN_TIMEOUT") * _SECOND_NS
CLOSE_TIMEOUT_NS = header_define("config.h", "FS_CT_CLOSE_TIMEOUT") * _SECOND_NS


@dataclass(frozen=True)
class Endpoints:
    source: str
    source_port: int
    destination: str
    destination_port: int


@dataclass(frozen=True)
class TrackedConnection:
    """One conntrack entry: `original` as the client sent it, `translated` when a frontend was translated."""

    protocol: int
    scope: int
    original: Endpoints
    translated: Endpoints | None
    frontend_id: int  # 0: not translated on this node
    state: str  # new, established, closing, expired
    idle_ns: int
    age_ns: int  # since the connection was first seen, to within a second
    expires_in_ns: int
    forward: Direction
    reply: Direction
    verdict: str  # allowed, denied, "" (not judged)
    rule: int  # the policy rule that decided; 0: none


def tracked_connections(conntrack: ConntrackTable, lb: LbMaps, now_ns: int | None = None) -> list[TrackedConnection]:
    """Every connection in ct4 and ct6, the most recently active first."""
    now = monotonic_ns() if now_ns is None else now_ns
    keys, entries = conntrack.read()
    if not len(keys):
        return []
    reverse = {_reverse_key(r): r for r in lb.reverse_entries()}
    frontends = {fe.id: fe for fe in lb.frontends()}
    found = [
        _tracked(Connection.of(key, entry), entry, now, reverse, frontends)
        for key, entry in zip(keys, entries, strict=True)
    ]
    return sorted(found, key=lambda c: c.idle_ns)


def _tracked(
    connection: Connection,
    entry: np.void,
    now: int,
    reverse: dict[tuple[str, int, str, int, int], ReverseEntry],
    frontends: dict[int, Frontend],
) -> TrackedConnection:
    sent = Endpoints(connection.source, connection.source_port, connection.destination, connection.destination_port)
    frontend_id = int(entry["frontend"])
    original, translated = sent, None
    if frontend_id:
        asked = _asked(sent, connection.proto, frontend_id, reverse, frontends)
        if asked is not None:
            original, translated = Endpoints(sent.source, sent.source_port, *asked), sent
    expires = int(entry["expires"])
    state = _state(entry, connection.proto)
    lifetime = _lifetime_ns(state, connection.proto)
    flags = int(entry["flags"])
    return TrackedConnection(
        protocol=connection.proto,
        scope=connection.scope,
        original=original,
        translated=translated,
        frontend_id=frontend_id,
        state="expired" if expires < now else state,
        idle_ns=max(0, now - (expires - lifetime)),
        age_ns=max(0, now - int(entry["dir"][0]["born_s"]) * 1_000_000_000),
        expires_in_ns=max(0, expires - now),
        forward=connection.original,
        reply=connection.reply,
        verdict="denied" if flags & CT_F_DENIED else "allowed" if flags & CT_F_JUDGED else "",
        rule=int(entry["rule"]),
    )


def _asked(
    sent: Endpoints,
    protocol: int,
    frontend_id: int,
    reverse: dict[tuple[str, int, str, int, int], ReverseEntry],
    frontends: dict[int, Frontend],
) -> tuple[str, int] | None:
    """The frontend address and port the client sent to: its reverse-NAT entry's, else the frontend's own."""
    entry = reverse.get((sent.source, sent.source_port, sent.destination, sent.destination_port, protocol))
    if entry is not None and entry.frontend_id == frontend_id:
        return entry.frontend_address, entry.frontend_port
    frontend = frontends.get(frontend_id)
    return (frontend.address, frontend.port) if frontend is not None else None


def _reverse_key(entry: ReverseEntry) -> tuple[str, int, str, int, int]:
    return entry.client, entry.client_port, entry.backend.address, entry.backend.port, entry.protocol


def _state(entry: np.void, protocol: int) -> str:
    """The state the entry's lifetime follows (an expired entry is still in one, until the sweep takes it)."""
    if protocol == IPPROTO_TCP and (entry["closing"][0] or entry["closing"][1]):
        return "closing"
    return "established" if entry["seen"][REPLY] else "new"


def _lifetime_ns(state: str, protocol: int) -> int:
    """How long a connection in `state` lives past its last packet (conntrack.h fs_ct_lifetime_ns)."""
    if protocol != IPPROTO_TCP:
        return LIFETIME_NONTCP_NS
    return {"closing": CLOSE_TIMEOUT_NS, "new": SYN_TIMEOUT_NS}.get(state, LIFETIME_TCP_NS)
