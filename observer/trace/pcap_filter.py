"""A pcap-filter expression, in the subset the datapath can run, parsed into an expression of filter terms.

The subset is what the datapath's terms can test from a packet's headers as it enters (terms.py). The grammar,
by recursive descent (`or` binds loosest, `not` tightest, as in pcap):

    expr       := and { ("or" | "||") and }
    and        := unary { ("and" | "&&") unary }
    unary      := ("not" | "!") unary | "(" expr ")" | tcpflags | primitive
    primitive  := [dir] "host" ADDRESS            dir := "src" | "dst" | "src or dst" | "src and dst"
                | [dir] "net" CIDR | [dir] "net" IPV4 "mask" IPV4
                | [l4] [dir] "port" N | [l4] [dir] "portrange" N-M       l4 := "tcp" | "udp" | "sctp"
                | dir ADDRESS                     (host implied)
                | "tcp" | "udp" | "sctp" | "icmp" | "icmp6" | "ip" | "ip6"
                | ["ip" | "ip6"] "proto" (N | tcp | udp | sctp | icmp | icmp6)
                | VALUE                           (pcap's abbreviation: the previous primitive's qualifiers,
                                                   as in "host 10.0.0.1 or 10.0.0.2"; alone: host)
    tcpflags   := ("tcp[tcpflags]" | "tcp[13]") ["&" flags] ("==" | "=" | "!=") flags
    flags      := flag { "|" flag };   flag := tcp-fin | tcp-syn | tcp-rst | tcp-push | tcp-ack | tcp-urg
                                              | tcp-ece | tcp-cwr | N (decimal or 0x hex) | "(" flags ")"

Meanings are pcap's: `host`/`net` test either address, `port` either port, and ports are those of TCP, UDP and
SCTP only; `tcp port 80` is `tcp and port 80`; `ip proto N` is IPv4 only, `proto N` either family. Names are
not resolved: addresses and ports are numbers. Anything else (ether, vlan, len, greater, other header bytes,
...) is refused with a FilterError naming it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from flowscope.common.filter_values import port_number
from flowscope.observer.filters.base import FilterError
from flowscope.observer.trace.terms import TCP_FLAG_BITS, TRUE, All, AnyOf, Expr, Field, Not, Term

SUPPORTED = (
    "host, net (CIDR or mask), port, portrange, each with src/dst; tcp, udp, sctp, icmp, icmp6, ip, ip6, "
    "[ip|ip6] proto N; tcp[tcpflags] & FLAGS ==/!= FLAGS; and/&&, or/||, not/!, parentheses"
)
_TOKEN = re.compile(r"\s*(&&|\|\||!=|==|[()\[\]!&|=]|[^\s()\[\]!&|=]+)")
_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmp6": 58}
_FAMILIES = {"ip": 4, "ip6": 6}
_WITH_PORTS = ("tcp", "udp", "sctp")
_FIELDS = {
    ("src", "host"): Field.SRC_ADDR,
    ("dst", "host"): Field.DST_ADDR,
    ("", "host"): Field.ANY_ADDR,
    ("src", "port"): Field.SRC_PORT,
    ("dst", "port"): Field.DST_PORT,
    ("", "port"): Field.ANY_PORT,
}


@dataclass(frozen=True)
class _Qualifiers:
    """What a primitive's value is: its protocol (for ports), direction ("", "src", "dst", "and") and kind."""

    proto: str = ""
    direction: str = ""
    kind: str = "host"


def parse_pcap(text: str) -> Expr:
    """The expression `text` says; an empty one is always true."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.last = _Qualifiers()

    def parse(self) -> Expr:
        if not self.tokens:
            return TRUE
        expr = self.expr()
        if self.peek():
            self.refuse(f"unexpected {self.peek()!r}")
        return expr

    # -- the grammar

    def expr(self) -> Expr:
        parts = [self.conjunction()]
        while self.accept("or", "||"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self) -> Expr:
        parts = [self.unary()]
        while self.accept("and", "&&"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def unary(self) -> Expr:
        if self.accept("not", "!"):
            return Not(self.unary())
        if self.accept("("):
            expr = self.expr()
            self.expect(")")
            return expr
        return self.primitive()

    def primitive(self) -> Expr:
        word = self.peek().lower()
        if word in _PROTOCOLS or word in _FAMILIES:
            self.take()
            if word == "tcp" and self.peek() == "[":
                return self.tcp_flags()
            if word in _FAMILIES and self.peek().lower() == "proto":
                self.take()
                return All((Term.ip_family(_FAMILIES[word]), self.protocol_number()))
            if word in _WITH_PORTS and self.peek().lower() in ("src", "dst", "port", "portrange"):
                return All((Term.protocol(_PROTOCOLS[word]), self.qualified(proto=word)))
            return Term.ip_family(_FAMILIES[word]) if word in _FAMILIES else Term.protocol(_PROTOCOLS[word])
        if word == "proto":
            self.take()
            return self.protocol_number()
        if word in ("src", "dst", "host", "net", "port", "portrange"):
            return self.qualified(proto="")
        if _is_value(word):
            return self.value(self.last)
        return self.refuse(f"{self.peek()!r} is not supported" if word else "it ends too soon")

    def qualified(self, proto: str) -> Expr:
        direction = ""
        if self.accept("src", "dst"):
            direction = self.tokens[self.at - 1].lower()
            if self.peek().lower() in ("or", "and") and self.peek(1).lower() == (
                "dst" if direction == "src" else "src"
            ):
                direction = "" if self.take().lower() == "or" else "and"
                self.take()
        kind = self.peek().lower()
        if kind in ("host", "net", "port", "portrange"):
            self.take()
        elif direction and not proto:
            kind = "host"  # "src 10.0.0.1"
        else:
            self.refuse(
                f"{self.peek()!r} is not supported after {proto or direction!r}" if kind else "it ends too soon"
            )
        if proto and kind not in ("port", "portrange"):
            self.refuse(f"{proto} {kind}: only port and portrange take a protocol qualifier")
        self.last = _Qualifiers(proto, direction, kind)
        return self.value(self.last)

    def value(self, q: _Qualifiers) -> Expr:
        text = self.take()
        if q.kind in ("port", "portrange"):
            lo, hi = self.port_range(text) if q.kind == "portrange" else (self.port(text),) * 2
            expr = self.directed(q.direction, "port", lambda field: Term.ports(field, lo, hi))
            return All((Term.protocol(_PROTOCOLS[q.proto]), expr)) if q.proto else expr
        net = self.network(text) if q.kind == "net" else self.host(text)
        return self.directed(q.direction, "host", lambda field: Term.address(field, net))

    @staticmethod
    def directed(direction: str, kind: str, make: Callable[[Field], Term]) -> Expr:
        """The term for one direction; "src and dst" needs both."""
        if direction == "and":
            return All((make(_FIELDS[("src", kind)]), make(_FIELDS[("dst", kind)])))
        return make(_FIELDS[(direction, kind)])

    def tcp_flags(self) -> Expr:
        self.expect("[")
        index = self.take()
        if index.lower() not in ("tcpflags", "13"):
            self.refuse(f"tcp[{index}]: only tcp[tcpflags] (tcp[13]) can be tested")
        self.expect("]")
        mask = self.flags() if self.accept("&") else 0xFF
        operator = self.take()
        if operator not in ("==", "=", "!="):
            self.refuse(f"{operator!r} after tcp[tcpflags]: only == and != are supported")
        value = self.flags()
        if value & ~mask:
            self.refuse(f"tcp[tcpflags] & {mask:#04x} {operator} {value:#04x} compares bits the mask clears")
        term = Term.tcp_flags(mask, value)
        return term if operator != "!=" else All((Term.protocol(6), Not(term)))

    def flags(self) -> int:
        bits = self.flag()
        while self.accept("|"):
            bits |= self.flag()
        return bits

    def flag(self) -> int:
        if self.accept("("):
            bits = self.flags()
            self.expect(")")
            return bits
        text = self.take()
        if text.lower() in TCP_FLAG_BITS:
            return TCP_FLAG_BITS[text.lower()]
        number = _number(text)
        if number is None or number > 0xFF:
            self.refuse(f"{text!r} is not a TCP flag ({', '.join(TCP_FLAG_BITS)}, or a number 0-255)")
        return number

    # -- values

    def protocol_number(self) -> Expr:
        text = self.take()
        name = text.lower().removeprefix("\\")
        number = _PROTOCOLS.get(name, _number(text))
        if number is None or number > 255:
            self.refuse(f"proto {text}: a protocol is a number 0-255 or one of {', '.join(_PROTOCOLS)}")
        return Term.protocol(number)

    def port(self, text: str) -> int:
        try:
            return port_number(text)
        except ValueError as exc:
            return self.refuse(f"port: {exc}")

    def port_range(self, text: str) -> tuple[int, int]:
        lo, dash, hi = text.partition("-")
        if not dash:
            self.refuse(f"portrange {text}: a range is N-M")
        first, last = self.port(lo), self.port(hi)
        return min(first, last), max(first, last)

    def host(self, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if "/" in text:
            self.refuse(f"host {text}: a host is one address (net takes a CIDR)")
        try:
            return ipaddress.ip_network(ipaddress.ip_address(text))
        except ValueError:
            return self.refuse(f"{text!r} is not an IP address (names are not resolved)")

    def network(self, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if self.accept("mask"):
            text = f"{text}/{self.take()}"
        elif "/" not in text:
            self.refuse(f"net {text}: a network is a CIDR (10.0.0.0/8) or an address with a mask")
        try:
            return ipaddress.ip_network(text)
        except ValueError as exc:
            return self.refuse(f"net {text}: {exc}")

    # -- tokens

    def peek(self, ahead: int = 0) -> str:
        at = self.at + ahead
        return self.tokens[at] if at < len(self.tokens) else ""

    def take(self) -> str:
        token = self.peek()
        if not token:
            self.refuse("it ends too soon")
        self.at += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.peek().lower() in words:
            self.at += 1
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.accept(token):
            self.refuse(f"expected {token!r}, not {self.peek()!r}" if self.peek() else f"expected {token!r} at the end")

    def refuse(self, reason: str) -> NoReturn:
        raise FilterError(f"pcap filter: {reason} (supported: {SUPPORTED})")


def _tokens(text: str) -> list[str]:
    tokens, at = [], 0
    text = text.rstrip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        assert match is not None  # every non-blank character starts some token
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def _is_value(word: str) -> bool:
    return bool(word) and (word[0].isdigit() or ":" in word)


def _number(text: str) -> int | None:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10) if text.isdigit() else None
    except ValueError:
        return None
