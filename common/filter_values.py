"""The rules for the filter values a person types: protocol names, ports, addresses and CIDRs.

Written once, because two places apply them: the CLI (observe, top, demo), which refuses a bad value where it
is typed, before anything is sent; and the agent's filters, which must refuse it from any client. Each rule
raises ValueError with the reason; the caller says which filter it was.
"""

from __future__ import annotations

import ipaddress

L4_PROTOCOL_NAMES = ("tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6")
# Hubble's L7 names: accepted, and they select what an L7 record would (flows without one select nothing).
L7_PROTOCOL_NAMES = ("dns", "http", "kafka")
PROTOCOL_NAMES = (*L4_PROTOCOL_NAMES, *L7_PROTOCOL_NAMES)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def protocol_name(text: str) -> str:
    """A protocol's name, lowered (names are matched case-insensitively, as Hubble does)."""
    lowered = text.lower()
    if lowered not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {text!r} (known: {', '.join(PROTOCOL_NAMES)})")
    return lowered


def port_number(text: str) -> int:
    """A decimal port, 0-65535: no sign, no blanks, no service names."""
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def network(text: str) -> Network:
    """An address (as a /32 or /128) or a CIDR, IPv4 or IPv6."""
    try:
        if "/" in text:
            return ipaddress.ip_network(text.strip(), strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(text.strip()))
    except ValueError:
        kind = "a CIDR" if "/" in text else "an IP address"
        raise ValueError(f"{text!r} is not {kind}") from None
