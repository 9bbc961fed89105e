"""Hairpin in the datapath (lb.h fs_lb_hairpin) on crafted packets (BPF_PROG_TEST_RUN): a pod whose connection to
a ClusterIP goes to itself gets IPV4_LOOPBACK (169.254.42.1) as its source, and its reply, leaving it for that
address, comes from the ClusterIP to the pod again. Output bytes compared whole, checksums recomputed."""

from __future__ import annotations

import pytest
from dp_packets import IPPROTO_TCP, IPPROTO_UDP
from dp_run import addr16
from test_datapath_lb import (
    BACKENDS,
    CLUSTER_IP,
    FRONTEND_ID,
    OUT,
    assert_checksums_valid,
    checksum_fields,
    frame,
    frontend,
    lb,  # noqa: F401 (the fixture)
    run,
)

from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.lbmaps import Backend

pytestmark = pytest.mark.bpf

LOOPBACK = "169.254.42.1"
POD = BACKENDS[4][0]  # the client, and the backend the frontend sends it to


@pytest.mark.parametrize("proto", [IPPROTO_TCP, IPPROTO_UDP])
def test_a_pod_reaching_itself_through_its_service_comes_from_the_loopback_and_is_answered(
    lb: Datapath,  # noqa: F811
    proto: int,
) -> None:
    lb.lb.replace([frontend(4, proto)])
    sent = frame(4, proto, POD, 40000, CLUSTER_IP[4], 80)
    out, [event] = run(lb, OUT, sent)

    assert out == frame(4, proto, LOOPBACK, 40000, POD, 8080)
    assert_checksums_valid(4, out)
    # the event shows the packet as the pod sent it
    assert (bytes(event["saddr"]), int(event["sport"])) == (addr16(POD), 40000)
    assert (bytes(event["daddr"]), int(event["dport"])) == (addr16(CLUSTER_IP[4]), 80)
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    captured = bytearray(sent)
    for off, value in checksum_fields(4, out):
        captured[off : off + len(value)] = value
    assert bytes(event["data"])[: len(sent)] == bytes(captured)
    [entry] = lb.lb.reverse_entries()
    assert (entry.client, entry.client_port, entry.backend) == (LOOPBACK, 40000, Backend(POD, 8080))

    reply = frame(4, proto, POD, 8080, LOOPBACK, 40000)
    out, [event] = run(lb, OUT, reply)
    assert out == frame(4, proto, CLUSTER_IP[4], 80, POD, 40000)
    assert_checksums_valid(4, out)
    assert (bytes(event["saddr"]), int(event["sport"])) == (addr16(CLUSTER_IP[4]), 80)
    assert (bytes(event["daddr"]), int(event["dport"])) == (addr16(POD), 40000)
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    assert bytes(event["data"])[: len(out)] == out


def test_a_packet_to_the_loopback_of_no_hairpin_connection_is_untouched(lb: Datapath) -> None:  # noqa: F811
    lb.lb.replace([frontend(4, IPPROTO_TCP)])
    sent = frame(4, IPPROTO_TCP, POD, 8080, LOOPBACK, 40000)
    out, [event] = run(lb, OUT, sent)
    assert out == sent
    assert int(event["policy_flags"]) == 0
