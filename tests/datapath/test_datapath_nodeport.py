"""NodePort in the datapath (bpf/include/flowscope/nodeport.h) on crafted packets (BPF_PROG_TEST_RUN), frontends
written through LbMaps: at from-netdev, a packet to the node's address at a NodePort goes to a backend; one on this
node (the ipcache names its endpoint) only gets the DNAT and its reply the node address back at to-netdev; a
remote one gets the SNAT too (the client's port while it is free) and its reply, at from-netdev, both undone.
Output bytes are compared whole and checksums recomputed from scratch."""

from __future__ import annotations

import pytest
from dp_packets import IPPROTO_TCP, IPPROTO_UDP
from dp_run import EP_ID, EP_IDENTITY, addr16
from test_datapath_lb import FAMILIES_PROTOS, assert_checksums_valid, checksum_fields, frame, run

from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.lbmaps import Backend, Frontend, NodePortEntry

pytestmark = pytest.mark.bpf

IN, OUT = "from_netdev", "to_netdev"
NODE = {4: "10.77.0.1", 6: "fd77::1"}  # this node's address, where the NodePort is
CLIENT = {4: "10.77.0.100", 6: "fd77::100"}
OTHER_CLIENT = {4: "10.77.0.101", 6: "fd77::101"}
LOCAL = {4: "10.0.1.7", 6: "fd00:1::7"}  # a pod on this node
REMOTE = {4: "10.0.2.9", 6: "fd00:2::9"}  # a pod on another node
NODE_PORT, TARGET, FRONTEND_ID = 30900, 9000, 11


def serve(dp: Datapath, family: int, proto: int, backend: dict[int, str]) -> None:
    """The NodePort frontend on NODE over the one backend; LOCAL is an endpoint of this node."""
    prefix = 128 if family == 6 else 32
    dp.replace_ipcache({f"{LOCAL[family]}/{prefix}": (EP_IDENTITY, EP_ID), f"{REMOTE[family]}/{prefix}": 4242})
    backends = (Backend(backend[family], TARGET),)
    dp.lb.replace([Frontend(FRONTEND_ID, NODE[family], NODE_PORT, proto, True, backends)])


def assert_translated_event(event: dict, point: int, src: tuple[str, int], dst: tuple[str, int]) -> None:
    assert int(event["type"]) == names.EVENT_TRACE and int(event["subtype"]) == point
    assert (bytes(event["saddr"]), int(event["sport"])) == (addr16(src[0]), src[1])
    assert (bytes(event["daddr"]), int(event["dport"])) == (addr16(dst[0]), dst[1])
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID


def as_it_entered(sent: bytes, out: bytes, family: int) -> bytes:
    """An event's capture of a packet translated at its hook: as it entered, but for the translated checksums."""
    captured = bytearray(sent)
    for off, value in checksum_fields(family, out):
        captured[off : off + len(value)] = value
    return bytes(captured)


@pytest.mark.parametrize(("family", "proto"), FAMILIES_PROTOS)
def test_a_local_backend_gets_the_dnat_and_its_reply_the_node_address_at_to_netdev(
    lb: Datapath, family: int, proto: int
) -> None:
    serve(lb, family, proto, LOCAL)
    sent = frame(family, proto, CLIENT[family], 40000, NODE[family], NODE_PORT)
    out, [event] = run(lb, IN, sent)

    assert out == frame(family, proto, CLIENT[family], 40000, LOCAL[family], TARGET)
    assert_checksums_valid(family, out)
    client, node = (CLIENT[family], 40000), (NODE[family], NODE_PORT)
    assert_translated_event(event, names.TRACE_FROM_NETWORK, client, node)
    assert bytes(event["data"])[: len(sent)] == as_it_entered(sent, out, family)

    reply = frame(family, proto, LOCAL[family], TARGET, CLIENT[family], 40000)
    out, [event] = run(lb, OUT, reply)
    assert out == frame(family, proto, NODE[family], NODE_PORT, CLIENT[family], 40000)
    assert_checksums_valid(family, out)
    assert_translated_event(event, names.TRACE_TO_NETWORK, node, client)
    assert bytes(event["data"])[: len(out)] == out


@pytest.mark.parametrize(("family", "proto"), FAMILIES_PROTOS)
def test_a_remote_backend_gets_the_snat_too_and_its_reply_both_undone_at_from_netdev(
    lb: Datapath, family: int, proto: int
) -> None:
    serve(lb, family, proto, REMOTE)
    sent = frame(family, proto, CLIENT[family], 40000, NODE[family], NODE_PORT)
    out, [event] = run(lb, IN, sent)

    assert out == frame(family, proto, NODE[family], 40000, REMOTE[family], TARGET)  # the client's port is free
    assert_checksums_valid(family, out)
    client, node = (CLIENT[family], 40000), (NODE[family], NODE_PORT)
    assert_translated_event(event, names.TRACE_FROM_NETWORK, client, node)
    assert bytes(event["data"])[: len(sent)] == as_it_entered(sent, out, family)
    assert lb.lb.nodeport_entries() == [
        NodePortEntry(
            CLIENT[family],
            40000,
            Backend(REMOTE[family], TARGET),
            NODE[family],
            40000,
            proto,
            NODE[family],
            NODE_PORT,
            FRONTEND_ID,
            True,
        )
    ]

    reply = frame(family, proto, REMOTE[family], TARGET, NODE[family], 40000)
    out, [event] = run(lb, IN, reply)
    assert out == frame(family, proto, NODE[family], NODE_PORT, CLIENT[family], 40000)
    assert_checksums_valid(family, out)
    assert_translated_event(event, names.TRACE_FROM_NETWORK, node, client)
    assert bytes(event["data"])[: len(out)] == out


def test_clients_with_one_port_get_apart_and_each_keeps_its_own(lb: Datapath) -> None:
    serve(lb, 4, IPPROTO_TCP, REMOTE)
    first = frame(4, IPPROTO_TCP, CLIENT[4], 40000, NODE[4], NODE_PORT)
    second = frame(4, IPPROTO_TCP, OTHER_CLIENT[4], 40000, NODE[4], NODE_PORT)
    run(lb, IN, first)
    out, _ = run(lb, IN, second)
    snat_port = int.from_bytes(out[34:36], "big")
    assert snat_port != 40000 and 32768 <= snat_port < 32768 + 28232
    assert out == frame(4, IPPROTO_TCP, NODE[4], snat_port, REMOTE[4], TARGET)
    # each connection's later packets keep the port it was given
    assert run(lb, IN, first)[0] == frame(4, IPPROTO_TCP, NODE[4], 40000, REMOTE[4], TARGET)
    assert run(lb, IN, second)[0] == out
    # and each reply finds its client
    for port, to in ((40000, CLIENT[4]), (snat_port, OTHER_CLIENT[4])):
        reply = frame(4, IPPROTO_TCP, REMOTE[4], TARGET, NODE[4], port)
        assert run(lb, IN, reply)[0] == frame(4, IPPROTO_TCP, NODE[4], NODE_PORT, to, 40000)


def test_other_packets_at_the_device_are_untouched(lb: Datapath) -> None:
    serve(lb, 4, IPPROTO_TCP, REMOTE)
    for program, sent in (
        (IN, frame(4, IPPROTO_TCP, CLIENT[4], 40000, NODE[4], NODE_PORT + 1)),  # another port
        (IN, frame(4, IPPROTO_UDP, CLIENT[4], 40000, NODE[4], NODE_PORT)),  # another protocol
        (IN, frame(4, IPPROTO_TCP, REMOTE[4], TARGET, NODE[4], 40000)),  # a "reply" of no connection
        (OUT, frame(4, IPPROTO_TCP, CLIENT[4], 40000, NODE[4], NODE_PORT)),  # NodePort is looked up coming in
    ):
        out, [event] = run(lb, program, sent)
        assert out == sent
        assert int(event["policy_flags"]) == 0 and int(event["rule"]) == 0


def test_a_nodeport_without_backends_drops(lb: Datapath) -> None:
    lb.lb.replace([Frontend(FRONTEND_ID, NODE[4], NODE_PORT, IPPROTO_TCP, True, ())])
    sent = frame(4, IPPROTO_TCP, CLIENT[4], 40000, NODE[4], NODE_PORT)
    _, [event] = run(lb, IN, sent, verdict=2)  # TC_ACT_SHOT
    assert int(event["drop_reason"]) == names.DROP_SERVICE_BACKEND_NOT_FOUND
    assert int(event["rule"]) == FRONTEND_ID
    assert lb.lb.nodeport_entries() == []


def test_a_removed_nodeport_forgets_its_connections(lb: Datapath) -> None:
    serve(lb, 4, IPPROTO_TCP, REMOTE)
    run(lb, IN, frame(4, IPPROTO_TCP, CLIENT[4], 40000, NODE[4], NODE_PORT))
    lb.lb.replace([])
    assert lb.lb.nodeport_entries() == []
    reply = frame(4, IPPROTO_TCP, REMOTE[4], TARGET, NODE[4], 40000)
    assert run(lb, IN, reply)[0] == reply
