"""The decoder: one stored event record in, one `flow.Flow` out (Hubble's L3/L4 parser, for our record).

Also home to what the filters must compute exactly as the decoder does (traffic direction, is_reply, which
endpoint owns an address, flow uuids), so that a filter selects precisely the flows that decode to a match.
"""

from flowscope.observer.parser.decoder import FlowDecoder
from flowscope.observer.parser.direction import (
    EGRESS,
    INGRESS,
    IS_REPLY,
    NOT_REPLY,
    REPLY_UNKNOWN,
    UNKNOWN,
    reply_states,
    traffic_direction,
    traffic_directions,
)
from flowscope.observer.parser.endpoint_index import EndpointIndex, index_of
from flowscope.observer.parser.fieldmask import FieldTree, compile_field_mask
from flowscope.observer.parser.packet import Packet, parse_packet
from flowscope.observer.parser.summary import summarize
from flowscope.observer.parser.uuids import FlowIds

__all__ = [
    "EGRESS",
    "INGRESS",
    "IS_REPLY",
    "NOT_REPLY",
    "REPLY_UNKNOWN",
    "UNKNOWN",
    "EndpointIndex",
    "FieldTree",
    "FlowDecoder",
    "FlowIds",
    "Packet",
    "compile_field_mask",
    "index_of",
    "parse_packet",
    "reply_states",
    "summarize",
    "traffic_direction",
    "traffic_directions",
]
