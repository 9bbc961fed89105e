"""The datapath's debug events, as Cilium's monitor carries them to Hubble's GetDebugEvents.

The datapath sends them through the same ring buffer as flows (one record layout for everything it reports), as
records of type EVENT_DEBUG; the ingest thread takes them out of each batch before the flow ring sees it and hands
them here, where they are decoded into flow.DebugEvent and kept in the node's debug-event ring
(observer/event_ring.py). They are few (one per new service translation), so decoding them one by one costs
nothing that matters.

The one kind the datapath sends today is a new translation (bpf/include/flowscope/lb.h, fs_lb_debug): Cilium's
DBG_LB4/LB6_LOOKUP_BACKEND_SLOT_SUCCESS, whose arguments are Cilium's too (arg1 the backend's IPv4 address, or
the last four bytes of its IPv6 one, as a network-order number; arg2 its port; arg3 the frontend's id, Cilium's
reverse-NAT index), and whose message says the whole connection: client, frontend and backend.
"""

from __future__ import annotations

import ipaddress
from typing import cast

import numpy as np
from google.protobuf import wrappers_pb2

from flowscope.api.flow import flow_pb2
from flowscope.common.names import POLICY_PROTOCOL_NAMES
from flowscope.observer.event_ring import EventRing
from flowscope.observer.events import F_IPV6

LB_SUCCESS = (flow_pb2.DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS, flow_pb2.DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS)


def _address(raw: bytes, ipv6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv6Address(raw[:16]) if ipv6 else ipaddress.IPv4Address(raw[:4])


def _endpoint(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def decode(record: np.void) -> flow_pb2.DebugEvent:
    """One EVENT_DEBUG record as Hubble's DebugEvent."""
    event = flow_pb2.DebugEvent(
        type=cast(flow_pb2.DebugEventType, int(record["subtype"])),
        source=flow_pb2.Endpoint(ID=int(record["ep_id"]), identity=int(record["src_identity"])),
        hash=wrappers_pb2.UInt32Value(value=int(record["hash"])),
        cpu=wrappers_pb2.Int32Value(value=int(record["cpu"])),
    )
    if event.type in LB_SUCCESS:
        _backend_chosen(event, record)
    return event


def _backend_chosen(event: flow_pb2.DebugEvent, record: np.void) -> None:
    ipv6 = bool(int(record["flags"]) & F_IPV6)
    data = bytes(record["data"])
    backend = _address(data, ipv6)
    backend_port = int.from_bytes(data[16:18], "little")
    frontend = _address(bytes(record["daddr"]), ipv6)
    client = _address(bytes(record["saddr"]), ipv6)
    protocol = POLICY_PROTOCOL_NAMES.get(int(record["l4_proto"]), str(int(record["l4_proto"])))
    event.arg1.value = int.from_bytes(backend.packed[-4:], "big")
    event.arg2.value = backend_port
    event.arg3.value = int(record["rule"])
    event.message = (
        f"Service backend slot lookup success: target={_endpoint(backend, backend_port)}, "
        f"frontend={_endpoint(frontend, int(record['dport']))}/{protocol} (id {int(record['rule'])}), "
        f"client={_endpoint(client, int(record['sport']))}"
    )


class DebugEvents:
    """The ingest thread's outlet for debug records: decodes them into the ring GetDebugEvents serves."""

    def __init__(self, ring: EventRing[flow_pb2.DebugEvent]) -> None:
        self.ring = ring

    def __call__(self, records: np.ndarray) -> None:
        for record in records:
            self.ring.add(decode(record), int(record["ts"]))
