"""A new service translation as a debug event (lb.h fs_lb_debug, observer/debug_events.py) on crafted packets
(BPF_PROG_TEST_RUN): one record per connection, the first packet's, with the client, the frontend and the backend
chosen; decoded into Hubble's DebugEvent as Cilium words it."""

from __future__ import annotations

import pytest
from dp_packets import IPPROTO_TCP, IPPROTO_UDP
from dp_run import addr16
from test_datapath_lb import BACKENDS, CLIENT, CLUSTER_IP, FRONTEND_ID, frame, frontend, run

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.c_source import header_define
from flowscope.observer.debug_events import decode

pytestmark = pytest.mark.bpf

OUT = "from_container"
SUCCESS = {4: flow_pb2.DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS, 6: flow_pb2.DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS}
MESSAGE = {
    4: "Service backend slot lookup success: target=10.0.2.1:8080, frontend=10.96.0.10:80/{proto} (id 7), "
    "client=10.0.1.5:40000",
    6: "Service backend slot lookup success: target=[fd00:2::1]:8080, frontend=[fd96::10]:80/{proto} (id 7), "
    "client=[fd00:1::5]:40000",
}


@pytest.mark.parametrize(("family", "proto"), [(4, IPPROTO_TCP), (4, IPPROTO_UDP), (6, IPPROTO_TCP), (6, IPPROTO_UDP)])
def test_a_connections_first_packet_tells_which_backend_it_got(lb: Datapath, family: int, proto: int) -> None:
    lb.lb.replace([frontend(family, proto)])
    sent = frame(family, proto, CLIENT[family], 40000, CLUSTER_IP[family], 80)
    debug: list = []
    _, [flow] = run(lb, OUT, sent, debug=debug)
    run(lb, OUT, sent, debug=debug)  # the connection's next packet: no news
    [record] = debug

    assert int(record["type"]) == names.EVENT_DEBUG and int(record["subtype"]) == SUCCESS[family]
    assert bytes(record["saddr"]) == addr16(CLIENT[family]) and int(record["sport"]) == 40000
    assert bytes(record["daddr"]) == addr16(CLUSTER_IP[family]) and int(record["dport"]) == 80
    assert int(record["rule"]) == FRONTEND_ID and int(record["ep_id"]) == int(flow["ep_id"])

    event = decode(record)
    backend = BACKENDS[family][0]
    assert event.type == SUCCESS[family]
    assert event.arg1.value == int.from_bytes(addr16(backend)[:4] if family == 4 else addr16(backend)[-4:], "big")
    assert (event.arg2.value, event.arg3.value) == (8080, FRONTEND_ID)
    assert event.source.ID == int(flow["ep_id"])
    assert event.message == MESSAGE[family].format(proto=names.POLICY_PROTOCOL_NAMES[proto])


def test_the_debug_event_type_is_the_headers() -> None:
    assert names.EVENT_DEBUG == header_define("event.h", "FS_EVENT_DEBUG") == names.EVENT_TYPES["debug"]
    assert header_define("lb.h", "FS_DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS") == SUCCESS[4]
    assert header_define("lb.h", "FS_DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS") == SUCCESS[6]
