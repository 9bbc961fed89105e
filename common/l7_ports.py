"""Which ports carry which L7 protocol, as the agent's `--l7-ports` spells it and the datapath's `l7_ports` holds it.

A spec is a comma-separated list of `PROTOCOL/PORT=KIND[:CAPLEN]` (`udp/53=dns:512`), or `none`. CAPLEN is how
many payload bytes the datapath captures of each such packet: enough for the message's head (a DNS message, an
HTTP request line and headers, a ClientHello), never the body; its default depends on the kind. The record can
carry at most the datapath's FS_L7_CAPLEN packet bytes (headers included), so a larger caplen is cut there.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowscope.common.capture import MAX_CAPLEN

DEFAULT_L7_CAPLEN = 1024  # FS_L7_CAPLEN: packet bytes an L7 record carries (bpf/include/flowscope/l7.h)
DEFAULT_L7_PORTS = "udp/53=dns:512,tcp/53=dns:512,tcp/80=http:1024,tcp/8080=http:1024,tcp/443=tls:1024"

# kind -> its number in the datapath (FS_L7_* of l7.h)
KINDS = {"dns": 1, "http": 2, "tls": 3}
DEFAULT_CAPLENS = {"dns": 512, "http": 1024, "tls": 1024}
# DNS runs over both; HTTP/1.x and TLS only over TCP (QUIC's ClientHello is encrypted in its Initial packet)
PROTOCOLS = {"dns": ("udp", "tcp"), "http": ("tcp",), "tls": ("tcp",)}

_FORMAT = "PROTOCOL/PORT=KIND[:CAPLEN], e.g. udp/53=dns:512"


@dataclass(frozen=True)
class L7Port:
    """One configured port: packets to or from it over `protocol` carry `kind`; `caplen` payload bytes kept."""

    protocol: str  # "tcp" | "udp"
    port: int
    kind: str  # "dns" | "http" | "tls"
    caplen: int

    @property
    def kind_number(self) -> int:
        return KINDS[self.kind]


def parse_l7_ports(spec: str) -> tuple[L7Port, ...]:
    """The ports of `spec` in its order; ValueError naming the item and what is wrong with it."""
    if spec.strip().lower() == "none":
        return ()
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or not all(items):
        raise ValueError(f"L7 ports {spec!r}: an empty item; give {_FORMAT} items separated by commas, or none")
    ports = tuple(_parse_item(item) for item in items)
    seen: set[tuple[str, int]] = set()
    for port in ports:
        if (port.protocol, port.port) in seen:
            raise ValueError(f"L7 ports: {port.protocol}/{port.port} is given twice")
        seen.add((port.protocol, port.port))
    return ports


def _parse_item(item: str) -> L7Port:
    where, sep, what = item.partition("=")
    protocol, slash, port_text = where.partition("/")
    if not sep or not slash:
        raise ValueError(f"L7 port {item!r}: expected {_FORMAT}")
    protocol = protocol.strip().lower()
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"L7 port {item!r}: protocol must be tcp or udp, not {protocol!r}")
    port = _number(item, "port", port_text, 1, 65535)
    kind, colon, caplen_text = what.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"L7 port {item!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if protocol not in PROTOCOLS[kind]:
        raise ValueError(f"L7 port {item!r}: {kind} is captured over {' and '.join(PROTOCOLS[kind])} only")
    caplen = _number(item, "caplen", caplen_text, 1, MAX_CAPLEN) if colon else DEFAULT_CAPLENS[kind]
    return L7Port(protocol=protocol, port=port, kind=kind, caplen=caplen)


def _number(item: str, name: str, text: str, low: int, high: int) -> int:
    text = text.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"L7 port {item!r}: {name} must be a number in {low}..{high}, not {text!r}")
    return int(text)
