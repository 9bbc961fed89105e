"""Protobuf's wire format where flowscope writes bytes itself (the agent's GetFlows answer, the relay's node
names), instead of building messages: the one varint encoder they share."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf varint."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # a flow's length: two bytes
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x20_0000:  # a port from 16384 on (every ephemeral port): three bytes
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
