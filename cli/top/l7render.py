"""The L7 view's columns and cells: who asked whom (client → server), over which protocol/port, what (`GET
/status/404`, `web.web.svc.lab. A`), the answers by status (`2xx 12 4xx 3`, `NOERROR 5 NXDOMAIN 1`),
requests per second, errors and the p50/p95 latency of the answers.

The status words are built for the visible rows only, at the refresh rate, like every other cell. The
connection view's L7 column is made of the same words (`connection_cell`): a connection's busiest request, its
answers by status over all its L7 rows, and that request's p50/p95.
"""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len

from flowscope.cli.top.buckets import WINDOWS
from flowscope.cli.top.cells import NARROW_NAME, Cell, Column, age, cut, duration, human, rate
from flowscope.cli.top.l7table import Connection, L7Snapshot

L7_COLUMNS = (
    Column("SOURCE", 0),
    Column("DESTINATION", 0),
    Column("PROTO", 8),
    Column("L7", 4),
    Column("REQUEST", 0, share=2),  # what was asked is what the view is for: it gets the room of two names
    Column("STATUS", 22, drop_rank=2, min_name=12),
    # The 2 s and 40 s rates go before names and requests are cut under 18 cells: 10 s is the one sorted by.
    *(Column(f"{window}s/s", 7, right=True, drop_rank={2: 7, 10: 0, 40: 8}[window], min_name=18) for window in WINDOWS),
    Column("REQS", 6, right=True, drop_rank=4),
    Column("ERR", 6, right=True, drop_rank=1, min_name=NARROW_NAME),  # the last to go: errors are news
    Column("P50", 6, right=True, drop_rank=6),
    Column("P95", 6, right=True),
    Column("SEEN", 5, right=True, drop_rank=3, min_name=NARROW_NAME),
)
SORTED_TITLES = {"last": "SEEN", "total": "REQS", "drops": "ERR", "slow": "P95"}

_HTTP_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx", "")
_DNS_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other")


def _words(kind: str, counts: np.ndarray, short: bool = False) -> str:
    """Answers by status slot: `2xx 12 4xx 3`, `NOERROR 5 NXDOMAIN 1` (`short`: `ok 5 NXDOMAIN 1`)."""
    names = (("ok", *_DNS_RCODES[1:]) if short else _DNS_RCODES) if kind == "DNS" else _HTTP_CLASSES
    return " ".join(f"{names[slot]} {human(float(count))}" for slot, count in enumerate(counts) if count)


def status(snapshot: L7Snapshot, row: int) -> Cell:
    """The row's answers by status slot, fewest words first: `2xx 12 4xx 3`; red when any was an error."""
    words = _words(snapshot.keys[row].kind, snapshot.status[row])
    if not words:
        return ("no answer", "dim") if snapshot.total[row] else ("", "")
    return (words, "red" if snapshot.errors[row] else "green")


def l7_cells(snapshot: L7Snapshot, row: int) -> dict[str, Cell]:
    key = snapshot.keys[row]
    errors = int(snapshot.errors[row])
    cells: dict[str, Cell] = {
        "SOURCE": (key.source, "cyan"),
        "DESTINATION": (key.destination, "cyan"),
        "PROTO": (key.protocol, "yellow"),
        "L7": (key.kind, "magenta"),
        "REQUEST": (key.request, "bold"),
        "STATUS": status(snapshot, row),
        "REQS": (human(float(snapshot.total[row])), ""),
        "ERR": (human(errors), "bold red") if errors else ("·", "dim"),
        "P50": duration(float(snapshot.p50[row])),
        "P95": duration(float(snapshot.p95[row])),
        "SEEN": (age(snapshot.now - float(snapshot.last_seen[row])), ""),
    }
    for index, window in enumerate(WINDOWS):
        cells[f"{window}s/s"] = rate(float(snapshot.rates[index, row]))
    return cells


L7_CELL = 44  # the connection view's L7 column
_REQUEST_AT_LEAST = 10  # cells of the request kept however long the answers' words are


def connection_cell(snapshot: L7Snapshot, connection: Connection) -> Cell:
    """A connection's L7 in one cell: its busiest request (`+N` more asked on it), the answers of all of them
    by status (DNS's NOERROR as `ok`), and that request's p50/p95 (`GET /api +2 2xx 40 5xx 1 1.2ms/8.0ms`); the
    request is what is cut when it does not fit, down to a few cells. Red when any answer was an error; empty
    for a connection without L7."""
    rows = snapshot.of_connection(connection)
    if not rows:
        return ("", "")
    busiest = max(rows, key=lambda row: (int(snapshot.total[row]), -row))
    kind = snapshot.keys[busiest].kind
    p50, p95 = float(snapshot.p50[busiest]), float(snapshot.p95[busiest])
    latency = "" if math.isnan(p95) else f"{duration(p50)[0]}/{duration(p95)[0]}"
    more = f" +{len(rows) - 1}" if len(rows) > 1 else ""
    tail = " ".join(part for part in (_words(kind, snapshot.status[rows].sum(axis=0), short=True), latency) if part)
    room = max(L7_CELL - cell_len(more) - cell_len(tail) - 1, _REQUEST_AT_LEAST)
    request = cut(snapshot.keys[busiest].request, room)
    errors = int(snapshot.errors[rows].sum())
    return (f"{request}{more} {tail}".rstrip(), "red" if errors else "magenta")
