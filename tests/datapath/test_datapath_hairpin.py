"""Hairpin in the datapath (lb.h fs_lb_hairpin) on crafted packets (BPF_PROG_TEST_RUN): a pod whose connection to
a ClusterIP goes to itself gets the loopback address (IPv4: Cilium's IPV4_LOOPBACK 169.254.42.1; IPv6:
fd96::a9fe:2a01) as its source, and its reply, leaving it for that address, comes from the ClusterIP to the pod
again. Output bytes compared whole, checksums recomputed (IPv6: TCP's and UDP's over the pseudo-header)."""

from __future__ import annotations

import pytest
from dp_packets import IPPROTO_TCP
from dp_run import addr16
from test_datapath_lb import (
    BACKENDS,
    CLUSTER_IP,
    FAMILIES_PROTOS,
    FRONTEND_ID,
    OUT,
    assert_checksums_valid,
    checksum_fields,
    frame,
    frontend,
    run,
)

from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.lbmaps import Backend

pytestmark = pytest.mark.bpf

LOOPBACK = {4: "169.254.42.1", 6: "fd96::a9fe:2a01"}
POD = {family: BACKENDS[family][0] for family in (4, 6)}  # the client, and the backend the frontend sends it to


@pytest.mark.parametrize(("family", "proto"), FAMILIES_PROTOS)
def test_a_pod_reaching_itself_through_its_service_comes_from_the_loopback_and_is_answered(
    lb: Datapath,
    family: int,
    proto: int,
) -> None:
    lb.lb.replace([frontend(family, proto)])
    pod, loopback, cluster_ip = POD[family], LOOPBACK[family], CLUSTER_IP[family]
    sent = frame(family, proto, pod, 40000, cluster_ip, 80)
    out, [event] = run(lb, OUT, sent)

    assert out == frame(family, proto, loopback, 40000, pod, 8080)
    assert_checksums_valid(family, out)
    # the event shows the packet as the pod sent it
    assert (bytes(event["saddr"]), int(event["sport"])) == (addr16(pod), 40000)
    assert (bytes(event["daddr"]), int(event["dport"])) == (addr16(cluster_ip), 80)
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    captured = bytearray(sent)
    for off, value in checksum_fields(family, out):
        captured[off : off + len(value)] = value
    assert bytes(event["data"])[: len(sent)] == bytes(captured)
    [entry] = lb.lb.reverse_entries()
    assert (entry.client, entry.client_port, entry.backend) == (loopback, 40000, Backend(pod, 8080))

    reply = frame(family, proto, pod, 8080, loopback, 40000)
    out, [event] = run(lb, OUT, reply)
    assert out == frame(family, proto, cluster_ip, 80, pod, 40000)
    assert_checksums_valid(family, out)
    assert (bytes(event["saddr"]), int(event["sport"])) == (addr16(cluster_ip), 80)
    assert (bytes(event["daddr"]), int(event["dport"])) == (addr16(pod), 40000)
    assert int(event["policy_flags"]) == names.XLATED_FLAG and int(event["rule"]) == FRONTEND_ID
    assert bytes(event["data"])[: len(out)] == out


@pytest.mark.parametrize("family", [4, 6])
def test_a_packet_to_the_loopback_of_no_hairpin_connection_is_untouched(lb: Datapath, family: int) -> None:
    lb.lb.replace([frontend(family, IPPROTO_TCP)])
    sent = frame(family, IPPROTO_TCP, POD[family], 8080, LOOPBACK[family], 40000)
    out, [event] = run(lb, OUT, sent)
    assert out == sent
    assert int(event["policy_flags"]) == 0
