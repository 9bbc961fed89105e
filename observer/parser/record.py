"""One stored record as the decoder reads it: its fields as Python values, and what its captured bytes say.

A record's fields are read in one go (`record.item()`, or a batch's `tolist()`) into a named tuple, which costs
far less per field than indexing a numpy record; its order is `struct fs_event`'s, checked against
observer/events.py when this module loads.
"""

from __future__ import annotations

import builtins
from typing import NamedTuple

from flowscope.observer import events
from flowscope.observer.parser.packet import Packet, complete_from_header, parse_packet


class Record(NamedTuple):
    """One stored record's fields as Python values, in `struct fs_event` order (checked below)."""

    ts: int
    type: int
    subtype: int
    version: int
    flags: int
    ifindex: int
    len_orig: int
    len_cap: int
    ep_id: int
    hash: int
    src_identity: int
    dst_identity: int
    ethertype: int
    l4_proto: int
    tcp_flags: int
    sport: int
    dport: int
    trace_reason: int
    verdict: int
    policy_flags: int
    cpu: int
    drop_reason: int
    tcp_flags_seen: int
    vni: builtins.bytes  # overlay points: the tunnel's VNI, big-endian (observer/parser/tunnel.py)
    packets: int
    rule: int  # policy verdict: the rule that decided, in the agent's rule table; with XLATED_FLAG a frontend id
    bytes: int
    location: int
    saddr: builtins.bytes  # the field above is named `bytes`
    daddr: builtins.bytes
    src_names: int  # name-set ids the agent attached when it stored the record (observer/l7/names.py)
    dst_names: int
    data: builtins.bytes


assert Record._fields == events.event_dtype().names, "decoder out of step with observer/events.py"


def packet_of(r: Record) -> Packet:
    """What the record's captured bytes say, completed from its header where they stop short."""
    packet = parse_packet(r.data[: r.len_cap])
    if packet.truncated or not packet.l4:  # the bytes stopped short (or there is no L4): what does the header know?
        complete_from_header(packet, r.ethertype, r.flags, r.saddr, r.daddr, r.l4_proto, r.sport, r.dport, r.tcp_flags)
    if not r.len_cap:  # nothing captured (some kernel drops): the header alone says whether it was cut
        packet.truncated = bool(r.flags & events.F_TRUNCATED)
    return packet
