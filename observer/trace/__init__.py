"""Packet-path sessions: picking packets with a session's filter and following each through the node (docs/trace.md)."""
