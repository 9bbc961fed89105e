"""Services from the command line: --service / --from-service / --to-service become Hubble's FlowFilter fields,
and the compact line of a decoded service flow reads as Hubble's does, with flowscope's ` via FRONTEND`."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest
from records import (
    ACK,
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    IFINDEX,
    SERVER,
    SERVER_V4,
    SERVER_V6,
    SYN,
    TS,
    ether,
    ipv6,
    record,
    tcp,
    tcp4,
    udp4,
)
from service_records import KUBE_DNS_V4, WEB_V4, WEB_V6, frontend_id, services_registry, translated

import flowscope.cli.observe
from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.main import build_parser
from flowscope.cli.observe.request import build_request
from flowscope.cli.printer import PrintOptions, Sink, make_printer
from flowscope.cli.timefmt import format_timestamp
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.filters import Batch, FilterContext, compile_filters
from flowscope.observer.parser import FlowDecoder

KNOWN, REPLY = events.F_REPLY_KNOWN, events.F_REPLY | events.F_REPLY_KNOWN
AT_CLIENT = {"ep_id": CLIENT.id, "ifindex": IFINDEX["lxc1001"]}
WEB_ID = frontend_id(WEB_V4, 80)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser([flowscope.cli.observe]).parse_args(["observe", *argv])


def whitelist(*argv: str) -> list[flow_pb2.FlowFilter]:
    return list(build_request(parse(*argv)).whitelist)


# --- flags ----------------------------------------------------------------------------------------


def test_to_and_from_service() -> None:
    assert whitelist("--to-service", "default/web") == [flow_pb2.FlowFilter(destination_service=["default/web"])]
    assert whitelist("--from-service", "kube-system/kube-dns") == [
        flow_pb2.FlowFilter(source_service=["kube-system/kube-dns"])
    ]


def test_service_at_either_end() -> None:
    assert whitelist("--service", "default/web") == [
        flow_pb2.FlowFilter(source_service=["default/web"]),
        flow_pb2.FlowFilter(destination_service=["default/web"]),
    ]


def test_not_service() -> None:
    request = build_request(parse("--to-service", "default/", "--not", "--to-service", "default/web"))
    assert list(request.blacklist) == [flow_pb2.FlowFilter(destination_service=["default/web"])]


def test_the_flags_select_on_the_agents_records() -> None:
    """What the CLI sends is what the agent's filters select by."""
    records = np.concatenate(
        [
            translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN),
            translated(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), WEB_ID, flags=REPLY),
            record(udp4(CLIENT_V4, KUBE_DNS_V4), flags=KNOWN),
            record(tcp4(CLIENT_V4, SERVER_V4), flags=KNOWN),
        ]
    )
    ctx = FilterContext(node_name="node1", snapshot=services_registry().snapshot)
    batch = Batch(records, np.arange(len(records), dtype=np.uint64))

    def rows(*argv: str) -> list[int]:
        request = build_request(parse(*argv))
        return np.flatnonzero(compile_filters(request.whitelist, request.blacklist, ctx)(batch)).tolist()

    assert rows("--to-service", "default/web") == [0]
    assert rows("--from-service", "default/web") == [1]
    assert rows("--service", "default/web") == [0, 1]
    assert rows("--to-service", "kube-system/") == [2]
    assert rows("--not", "--service", "default/") == [2, 3]


# --- the compact line -----------------------------------------------------------------------------

T = format_timestamp(flow_pb2.Flow(time={"seconds": TS // 10**9, "nanos": TS % 10**9}).time, "StampMilli")


def compact(records: np.ndarray, ip_translation: bool = True) -> str:
    flow = FlowDecoder("node1", services_registry(), b"cli-tests").decode(records[0], 1)
    out = io.StringIO()
    printer = make_printer("compact", Sink(out), Sink(io.StringIO()), PrintOptions(ip_translation=ip_translation))
    printer.write(observer_pb2.GetFlowsResponse(flow=flow))
    printer.close()
    return out.getvalue().rstrip("\n")


@pytest.mark.parametrize(
    ("translate", "expected"),
    [
        (True, "default/client-7d9f:40000 (ID:{c}) -> default/web:80 (world) from-endpoint FORWARDED (TCP Flags: SYN)"),
        (False, "10.200.1.11:40000 (ID:{c}) -> 10.96.0.10:80 (world) from-endpoint FORWARDED (TCP Flags: SYN)"),
    ],
)
def test_where_the_client_sent_it_the_service_is_the_destination(translate: bool, expected: str) -> None:
    """Hubble's rule: no pod there, so the service's namespace/name (the ClusterIP itself with -n)."""
    at_client = translated(tcp4(CLIENT_V4, WEB_V4), WEB_ID, flags=KNOWN, subtype=names.TRACE_FROM_LXC, **AT_CLIENT)
    assert compact(at_client, translate) == f"{T}: " + expected.format(c=CLIENT.identity)


def test_past_the_translation_the_backend_via_the_frontend() -> None:
    to_backend = translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN)
    assert compact(to_backend) == (
        f"{T}: default/client-7d9f:40000 (ID:{CLIENT.identity}) -> default/server-5c4b:80 (ID:{SERVER.identity})"
        " via 10.96.0.10:80 to-endpoint FORWARDED (TCP Flags: SYN)"
    )


def test_a_reply_from_the_backend_via_the_frontend() -> None:
    reply = translated(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), WEB_ID, flags=REPLY)
    assert compact(reply) == (
        f"{T}: default/client-7d9f:40000 (ID:{CLIENT.identity}) <- default/server-5c4b:80 (ID:{SERVER.identity})"
        " via 10.96.0.10:80 to-endpoint FORWARDED (TCP Flags: SYN, ACK)"
    )


def test_a_reply_from_the_frontend_needs_no_suffix() -> None:
    reply = translated(tcp4(WEB_V4, CLIENT_V4, 80, 40000, SYN | ACK), WEB_ID, flags=REPLY, **AT_CLIENT)
    assert compact(reply, ip_translation=False) == (
        f"{T}: 10.200.1.11:40000 (ID:{CLIENT.identity}) <- 10.96.0.10:80 (world) to-endpoint FORWARDED"
        " (TCP Flags: SYN, ACK)"
    )


def test_ipv6_frontend_in_brackets() -> None:
    packet = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 80)), 0x86DD)
    line = compact(translated(packet, frontend_id(WEB_V6, 80), flags=KNOWN), ip_translation=False)
    assert line == (
        f"{T}: [fd00:200:1::11]:40000 (ID:{CLIENT.identity}) -> [fd00:200:1::12]:80 (ID:{SERVER.identity})"
        " via [fd96::10]:80 to-endpoint FORWARDED (TCP Flags: SYN)"
    )
