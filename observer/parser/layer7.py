"""What a flow says of layer 7: an L7 record's message from the L7 store, and a TLS ClientHello's server name.

The datapath captures L7 at a pod's hooks only; an L7 record (type 129) numbers its entry in the L7 store in
`location`, and a ClientHello's trace record carries the server name's set id there (observer/l7/source.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_TRACE, TRACE_FROM_LXC, TRACE_TO_LXC
from flowscope.observer.l7.tls import TlsHello, parse_client_hello
from flowscope.observer.parser.record import Record

if TYPE_CHECKING:
    from flowscope.observer.l7.counts import L7Counts
    from flowscope.observer.l7.names import NameSets
    from flowscope.observer.l7.store import L7Store

_POD_POINTS = (TRACE_TO_LXC, TRACE_FROM_LXC)  # where the datapath captures L7 (and so ClientHellos)


def client_hello(data: bytes, len_cap: int, l4_offset: int) -> TlsHello | None:
    """The TLS ClientHello a TCP segment starts (handshake record, version 3.x, handshake type 1), as far as the
    captured bytes go; None for any other segment, after a test of three bytes. Its server name is usually past
    the bytes a flow record keeps: the record of the client's own hello carries it (`server_name`)."""
    if len_cap < l4_offset + 13:
        return None
    start = l4_offset + (data[l4_offset + 12] >> 4) * 4
    if data[start : start + 2] != b"\x16\x03" or data[start + 5 : start + 6] != b"\x01" or start + 6 > len_cap:
        return None
    return parse_client_hello(data[start:len_cap])


def server_name(r: Record, name_sets: NameSets | None) -> str:
    """The server name a ClientHello's record carries (observer/l7/source.py: its set id in `location`, which
    a trace record at a pod's hook has no other use for); "" for any other record."""
    if r.type != EVENT_TRACE or not r.location or r.subtype not in _POD_POINTS or name_sets is None:
        return ""
    names = name_sets.names(r.location)
    return names[0] if names else ""


def fill_l7(flow: flow_pb2.Flow, seq: int, store: L7Store | None, counts: L7Counts | None) -> None:
    """An L7 flow as Hubble's proxy flows are: Type L7, event type 129 with no sub-type, forwarded, its
    Layer7 message and Summary from the L7 store. An entry already overwritten leaves an L7 flow with its
    L3/L4 fields only, counted."""
    flow.Type = flow_pb2.L7
    flow.event_type.sub_type = 0
    flow.verdict = flow_pb2.FORWARDED
    entry = store.get(seq) if store is not None else None
    if entry is None:
        if counts is not None:
            counts.add(evicted=1)
        return
    flow.l7.ParseFromString(entry.layer7)
    flow.is_reply.value = flow.reply = flow.l7.type == flow_pb2.RESPONSE
    flow.Summary = entry.summary
    if entry.truncated:
        flow.flowscope.truncated = True
