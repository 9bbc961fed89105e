"""The datapath's filter terms, and boolean expressions of them brought to the form the datapath runs.

A session's filter is, in the kernel (bpf/include/flowscope/trace.h, fs_trace_filter), a flat list of terms:
clauses of ANDed terms separated by FS_TF_OR terms, each term possibly negated; the packet is picked when some
clause holds, and an empty list picks every packet. So whatever a person writes (Hubble FlowFilters, a pcap
expression) is parsed into an `Expr` over `Term`s and brought to disjunctive normal form here, once, with `not`
pushed down onto the terms (De Morgan) since only a term can be negated. The numbers (FS_TF_*, the term limit)
are read from the header, so the C stays the one place they are written.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import product

from flowscope.observer.datapath.c_source import header_define
from flowscope.observer.filters.base import FilterError

TERMS_MAX = header_define("trace.h", "FS_PATH_TERMS_MAX")
# Clauses an expression may reach while it is being expanded, before it is refused: far past what could fit in
# TERMS_MAX, but it stops `(a or b) and (c or d) and ...` from growing without bound first.
_CLAUSES_WHILE_EXPANDING = 4096


def _tf(name: str) -> int:
    return header_define("trace.h", f"FS_TF_{name}")


class Field(enum.IntEnum):
    """What a term tests (FS_TF_*)."""

    OR = _tf("OR")
    SRC_ADDR = _tf("SRC_ADDR")
    DST_ADDR = _tf("DST_ADDR")
    ANY_ADDR = _tf("ANY_ADDR")
    SRC_PORT = _tf("SRC_PORT")
    DST_PORT = _tf("DST_PORT")
    ANY_PORT = _tf("ANY_PORT")
    PROTO = _tf("PROTO")
    TCP_FLAGS = _tf("TCP_FLAGS")
    FAMILY = _tf("FAMILY")


ADDRESS_FIELDS = (Field.SRC_ADDR, Field.DST_ADDR, Field.ANY_ADDR)
PORT_FIELDS = (Field.SRC_PORT, Field.DST_PORT, Field.ANY_PORT)

# TCP flag bits by their pcap names (the datapath has the flags byte: FIN ... CWR; NS is not in it)
TCP_FLAG_BITS = {
    "tcp-fin": 0x01,
    "tcp-syn": 0x02,
    "tcp-rst": 0x04,
    "tcp-push": 0x08,
    "tcp-ack": 0x10,
    "tcp-urg": 0x20,
    "tcp-ece": 0x40,
    "tcp-cwr": 0x80,
}
PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}

_TERM = struct.Struct("<BBBxHH16s16s")  # struct fs_trace_term
TERM_SIZE = _TERM.size

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Term:
    """One struct fs_trace_term: a test of the packet's parsed header, held when it passes (or fails, negated)."""

    field: Field
    negate: bool = False
    family: int = 0  # addresses: 4 or 6
    lo: int = 0
    hi: int = 0
    addr: bytes = bytes(16)  # already masked; IPv4 in the first 4 bytes, as the datapath keeps it
    mask: bytes = bytes(16)

    @classmethod
    def address(cls, field: Field, net: Network) -> Term:
        pad = bytes(16 - len(net.network_address.packed))
        return cls(field, family=net.version, addr=net.network_address.packed + pad, mask=net.netmask.packed + pad)

    @classmethod
    def ports(cls, field: Field, lo: int, hi: int) -> Term:
        return cls(field, lo=lo, hi=hi)

    @classmethod
    def protocol(cls, number: int) -> Term:
        return cls(Field.PROTO, lo=number)

    @classmethod
    def tcp_flags(cls, mask: int, value: int) -> Term:
        """TCP packets whose flags, under `mask`, are `value`."""
        return cls(Field.TCP_FLAGS, lo=mask, hi=value)

    @classmethod
    def ip_family(cls, version: int) -> Term:
        return cls(Field.FAMILY, lo=version)

    def negated(self) -> Term:
        return replace(self, negate=not self.negate)

    @property
    def network(self) -> Network:
        size = 4 if self.family == 4 else 16
        prefix = sum(bin(byte).count("1") for byte in self.mask[:size])
        return ipaddress.ip_network((self.addr[:size], prefix))

    def __str__(self) -> str:
        return ("not " if self.negate else "") + _describe(self)


@dataclass(frozen=True)
class All:
    """Every part holds (no parts: always true)."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class AnyOf:
    """Some part holds (no parts: never true)."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    part: Expr


Expr = Term | All | AnyOf | Not
TRUE: Expr = All(())

Clause = tuple[Term, ...]


def dnf(expr: Expr) -> list[Clause]:
    """The clauses whose OR is `expr`, each an AND of terms: [()] is always true, [] never."""
    return _dnf(expr, negate=False)


def _dnf(expr: Expr, negate: bool) -> list[Clause]:
    if isinstance(expr, Term):
        return [(expr.negated() if negate else expr,)]
    if isinstance(expr, Not):
        return _dnf(expr.part, not negate)
    parts = [_dnf(part, negate) for part in expr.parts]
    if isinstance(expr, All) != negate:  # an AND, or an OR under `not` (De Morgan): multiply out
        clauses: list[Clause] = [()]
        for part in parts:
            clauses = _simplified(left + right for left, right in product(clauses, part))
            if len(clauses) > _CLAUSES_WHILE_EXPANDING:
                raise FilterError(
                    f"the filter expands to more than {_CLAUSES_WHILE_EXPANDING} alternatives, far more than the "
                    f"datapath's {TERMS_MAX} terms can hold; write a simpler filter"
                )
        return clauses
    return _simplified(clause for part in parts for clause in part)


def _simplified(clauses: Iterable[Clause]) -> list[Clause]:
    """Without repeated terms, clauses that cannot hold (a term and its negation) and clauses another implies."""
    kept: list[Clause] = []
    for clause in clauses:
        terms = tuple(dict.fromkeys(clause))
        if any(term.negated() in terms for term in terms):
            continue
        if not terms:
            return [()]
        kept.append(terms)
    sets = [frozenset(clause) for clause in kept]
    return [
        clause
        for i, clause in enumerate(kept)
        if not any(other < sets[i] or (other == sets[i] and j < i) for j, other in enumerate(sets))
    ]


def flatten(clauses: Sequence[Clause]) -> tuple[Term, ...]:
    """The term list the datapath runs: the clauses, FS_TF_OR between them."""
    if clauses == [()]:
        return ()
    terms: list[Term] = []
    for clause in clauses:
        if terms:
            terms.append(Term(Field.OR))
        terms.extend(clause)
    return tuple(terms)


def encode(terms: Sequence[Term]) -> bytes:
    """`struct fs_trace_term terms[FS_PATH_TERMS_MAX]` as the `trace_sessions` map value holds it."""
    if len(terms) > TERMS_MAX:
        raise ValueError(f"{len(terms)} terms, more than the datapath's {TERMS_MAX}")
    packed = b"".join(_TERM.pack(t.field, t.negate, t.family, t.lo, t.hi, t.addr, t.mask) for t in terms)
    return packed + bytes(TERM_SIZE * (TERMS_MAX - len(terms)))


def render(terms: Sequence[Term]) -> str:
    """The term list as a pcap-like expression (one this package's pcap parser reads back to the same terms)."""
    clauses: list[list[str]] = [[]]
    for term in terms:
        if term.field == Field.OR:
            clauses.append([])
        else:
            clauses[-1].append(str(term))
    if clauses == [[]]:
        return "every packet"
    if len(clauses) == 1:
        return " and ".join(clauses[0])
    return " or ".join(f"({' and '.join(c)})" if len(c) > 1 else c[0] for c in clauses)


_DIRECTIONS = {Field.SRC_ADDR: "src ", Field.DST_ADDR: "dst ", Field.SRC_PORT: "src ", Field.DST_PORT: "dst "}


def _describe(term: Term) -> str:
    direction = _DIRECTIONS.get(term.field, "")
    if term.field in ADDRESS_FIELDS:
        net = term.network
        if net.prefixlen == net.max_prefixlen:
            return f"{direction}host {net.network_address}"
        return f"{direction}net {net}"
    if term.field in PORT_FIELDS:
        if term.lo == term.hi:
            return f"{direction}port {term.lo}"
        return f"{direction}portrange {term.lo}-{term.hi}"
    if term.field == Field.PROTO:
        return PROTOCOL_NAMES.get(term.lo, f"proto {term.lo}")
    if term.field == Field.TCP_FLAGS:
        return f"tcp[tcpflags] & {_flag_names(term.lo)} == {_flag_names(term.hi)}"
    if term.field == Field.FAMILY:
        return "ip" if term.lo == 4 else "ip6"
    return term.field.name.lower()


def _flag_names(bits: int) -> str:
    names = [name for name, bit in TCP_FLAG_BITS.items() if bits & bit]
    if not names:
        return "0"
    return names[0] if len(names) == 1 else f"({'|'.join(names)})"
