"""The numbers in common/names.py are the datapath's (its C headers) and the wire's (the protobuf enums).

The headers stay the source of truth: a number changed there and not here would make the agent misread every
event of that kind without any error, so every `#define FS_<family>_...` must have its twin here, equal.
"""

from __future__ import annotations

import re
from pathlib import Path

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer import events

HEADERS = Path(__file__).resolve().parents[2] / "bpf" / "include" / "flowscope"
# The families of numbers the datapath and the wire share; the rest of the headers' numbers stay in C.
FAMILIES = ("EVENT_", "TRACE_", "VERDICT_", "DROP_", "IDENTITY_", "MATCH_")
_DEFINE = re.compile(r"^#define\s+FS_(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", re.MULTILINE)


def c_numbers() -> dict[str, int]:
    """Every `#define FS_NAME number` in the datapath's headers, by NAME."""
    found: dict[str, int] = {}
    for header in sorted(HEADERS.glob("*.h")):
        for name, value in _DEFINE.findall(header.read_text()):
            assert name not in found, f"FS_{name} defined twice"
            found[name] = int(value, 0)
    return found


def test_the_headers_are_read() -> None:
    c = c_numbers()
    assert c["EVENT_TRACE"] == 4 and c["TRACE_TO_NETWORK"] == 11 and c["DROP_POLICY_DENY"] == 181
    assert c["IDENTITY_WORLD"] == 2 and c["MATCH_PROTO_ONLY"] == 6 and c["F_AGGREGATE"] == 0x80


def test_every_shared_number_in_the_headers_is_the_same_here() -> None:
    shared = {name: value for name, value in c_numbers().items() if name.startswith(FAMILIES)}
    shared.pop("EVENT_VERSION")  # the record's own version, not a type: observer/events.py
    assert len(shared) >= 30
    for name, value in shared.items():
        assert getattr(names, name, None) == value, f"FS_{name} is {value} in C, common.names.{name} differs"


def test_the_records_own_numbers_are_the_same_in_observer_events() -> None:
    c = c_numbers()
    assert events.EVENT_VERSION == c["EVENT_VERSION"]
    flags = {name: value for name, value in c.items() if name.startswith("F_")}
    assert flags == {name: getattr(events, name) for name in flags}


def test_verdicts_and_lost_event_sources_are_the_wires() -> None:
    assert (names.VERDICT_FORWARDED, names.VERDICT_DROPPED) == (flow_pb2.FORWARDED, flow_pb2.DROPPED)
    assert names.LOST_KERNEL_BUFFER == flow_pb2.PERF_EVENT_RING_BUFFER
    assert names.LOST_AGENT_QUEUE == flow_pb2.OBSERVER_EVENTS_QUEUE
    assert names.LOST_RING_OVERRUN == flow_pb2.HUBBLE_RING_BUFFER


def test_trace_points_are_the_wires_observation_points() -> None:
    """On the wire, point 0 (to-endpoint) is TO_ENDPOINT = 101; the decoder maps it. The others are equal."""
    for number, name in names.TRACE_POINTS.items():
        wire = flow_pb2.TraceObservationPoint.Value(name.upper().replace("-", "_"))
        assert wire == (number or flow_pb2.TO_ENDPOINT), name


def test_the_datapaths_trace_reasons_are_the_wires() -> None:
    reasons = {name: value for name, value in c_numbers().items() if name.startswith("REASON_")}
    assert reasons["REASON_UNKNOWN"] == flow_pb2.TRACE_REASON_UNKNOWN
    for name, value in reasons.items():
        if name != "REASON_UNKNOWN":
            assert flow_pb2.TraceReason.Value(name.removeprefix("REASON_")) == value, name


def test_the_datapaths_drop_reasons_are_named_on_the_wire_and_in_hubbles_words() -> None:
    wire_names = {
        names.DROP_POLICY_DENIED: "POLICY_DENIED",
        names.DROP_CT_INVALID_HDR: "CT_TRUNCATED_OR_INVALID_HEADER",
        names.DROP_MISSED_TAIL_CALL: "MISSED_TAIL_CALL",
        names.DROP_CT_MAP_INSERTION_FAILED: "CT_MAP_INSERTION_FAILED",
        names.DROP_FRAG_NOSUPPORT: "IP_FRAGMENTATION_NOT_SUPPORTED",
        names.DROP_POLICY_DENY: "POLICY_DENY",
    }
    for number, wire_name in wire_names.items():
        assert flow_pb2.DropReason.Name(number) == wire_name
        assert number in names.DROP_REASON_TEXT


def test_reserved_identities_and_event_types_by_name() -> None:
    assert names.RESERVED_IDENTITIES[names.IDENTITY_REMOTE_NODE] == "remote-node"
    assert names.RESERVED_IDENTITY_NUMBERS["world"] == names.IDENTITY_WORLD
    assert names.EVENT_TYPES["policy-verdict"] == names.EVENT_POLICY_VERDICT
    assert names.EVENT_LOST not in names.EVENT_TYPES.values()  # the agent's own: never a flow on the wire
