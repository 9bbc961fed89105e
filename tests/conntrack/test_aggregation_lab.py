"""Monitor aggregation on a lab with the real agent: a 10,000-packet TCP transfer is an event per packet at
level none, and a handful of reports at medium whose packets and bytes add up to what the kernel's own veth
counters say went into the pods; changing the level while the agent runs reloads nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from agent_control import (
    TCP_CLIENT,
    connection,
    connection_counters,
    flows,
    now,
    program_ids,
    run_python,
    set_config,
    veth_counters,
)
from google.protobuf.timestamp_pb2 import Timestamp
from waiting import polled

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import TCP_RR_PORT

pytestmark = pytest.mark.bpf

REQUESTS = 10_000  # one request and one answer each way: about 10,000 packets into each pod
SWEEP_WAIT_S = 3.0  # interval (1 s) + the agent's tick (1 s) + margin: trailing counts are reported by then


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-agg") as lab:
        lab.up(traffic=False, agent=True)
        set_config(lab, "monitor-aggregation-interval", "1s")
        yield lab


def to_endpoint(flows_: list[flow_pb2.Flow], pod_ifname: str) -> list[flow_pb2.Flow]:
    """The passing packets' flows at a pod's to-endpoint point."""
    return [
        f
        for f in flows_
        if f.trace_observation_point == flow_pb2.TO_ENDPOINT
        and f.interface.name == pod_ifname
        and f.verdict == flow_pb2.FORWARDED
    ]


def closed(flows_: list[flow_pb2.Flow]) -> bool:
    """Whether a connection's flows (oldest first) have its last packet: both ends' FINs, then the other end's
    answer to the later FIN (its ACK)."""
    fins = [i for i, f in enumerate(flows_) if f.l4.TCP.flags.FIN]
    if len({flows_[i].l4.TCP.source_port for i in fins}) < 2:
        return False
    last = flows_[fins[-1]].l4.TCP.source_port
    return any(f.l4.TCP.source_port != last for f in flows_[fins[-1] + 1 :])


def packets(flows_: list[flow_pb2.Flow]) -> int:
    """Packets the flows stand for: a report's count, or one for a flow of one packet."""
    return sum(f.flowscope.packets if f.flowscope.aggregated else 1 for f in flows_)


@dataclass(frozen=True)
class Transfer:
    sport: int
    start: Timestamp
    into: dict[str, tuple[int, int]]  # pod -> (packets, bytes) its veth carried into it, background included
    connection: dict[str, tuple[int, int]]  # "out" (to the server), "back": the connection's own, from nftables


def transfer(lab: Lab, sport: int) -> Transfer:
    """Run the transfer with the lab quiet before and after, counting with the kernel's own counters."""
    client, server = lab.pod("client"), lab.pod("server")
    with connection_counters(lab, client.ipv4, sport) as counted:
        time.sleep(SWEEP_WAIT_S)  # whatever was pending before is reported before we start counting
        start = now()
        before = {pod.name: veth_counters(lab, pod.ifname) for pod in (client, server)}
        done = run_python(lab, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, sport, REQUESTS, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(SWEEP_WAIT_S)  # trailing counts: reported by the agent's sweep by now
        after = {pod.name: veth_counters(lab, pod.ifname) for pod in (client, server)}
        into = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}
        return Transfer(sport, start, into, counted())


def test_level_none_traces_every_packet(lab: Lab) -> None:
    set_config(lab, "monitor-aggregation", "none")
    client, server = lab.pod("client"), lab.pod("server")
    done = transfer(lab, 41001)
    assert done.connection["out"][0] >= REQUESTS  # the requests; with handshake, close and ACKs a few more
    every = flows(lab, flow_pb2.FlowFilter(), since=done.start)
    conn = flows(lab, *connection(client.ipv4, done.sport), since=done.start)
    for pod, way in ((server, "out"), (client, "back")):
        assert len(to_endpoint(conn, pod.ifname)) == done.connection[way][0], pod.name
        assert len(to_endpoint(every, pod.ifname)) == done.into[pod.name][0], pod.name
    assert not any(f.flowscope.aggregated for f in every)
    from_client = [f for f in conn if f.trace_observation_point == flow_pb2.FROM_ENDPOINT]
    assert len(from_client) == done.connection["out"][0] + done.connection["back"][0]  # both pods' veths


def test_level_medium_reports_a_handful_that_add_up(lab: Lab) -> None:
    set_config(lab, "monitor-aggregation", "medium")
    client, server = lab.pod("client"), lab.pod("server")
    done = transfer(lab, 41002)
    every = flows(lab, flow_pb2.FlowFilter(), since=done.start)
    conn = flows(lab, *connection(client.ipv4, done.sport), since=done.start)
    for pod, way in ((server, "out"), (client, "back")):
        reports = to_endpoint(conn, pod.ifname)
        assert all(f.flowscope.aggregated for f in reports)
        assert (packets(reports), sum(f.flowscope.bytes for f in reports)) == done.connection[way], pod.name
        assert packets(to_endpoint(every, pod.ifname)) == done.into[pod.name][0], pod.name
    assert not any(f.trace_observation_point == flow_pb2.FROM_ENDPOINT for f in conn)
    assert 4 <= len(conn) <= 12, [(f.flowscope.packets, f.is_reply.value) for f in conn]
    first = {f.is_reply.value: f for f in reversed(conn)}  # the first report each way
    assert (first[False].trace_reason, first[False].flowscope.packets) == (flow_pb2.NEW, 1)
    assert first[False].flowscope.tcp_flags_seen.SYN
    assert first[True].trace_reason == flow_pb2.REPLY and first[True].flowscope.tcp_flags_seen.SYN
    assert sum(1 for f in conn if f.flowscope.tcp_flags_seen.FIN) == 2  # a report on close each way


def test_changing_the_level_reloads_nothing(lab: Lab) -> None:
    client = lab.pod("client")
    ids = {dev: program_ids(lab, dev) for dev in (client.ifname, "eth0")}
    assert all(len(found) == 2 for found in ids.values())
    for level in ("none", "low", "medium", "maximum", "lowest"):
        set_config(lab, "monitor-aggregation", level)
    set_config(lab, "monitor-aggregation-flags", "all")
    set_config(lab, "monitor-aggregation-flags", "syn,fin,rst")
    assert {dev: program_ids(lab, dev) for dev in ids} == ids

    # and the level in force is the last one set: lowest traces each packet, at to-endpoint only
    start = now()
    done = run_python(lab, "client", TCP_CLIENT, lab.pod("server").ipv4, TCP_RR_PORT, 41003, 3)
    assert done.returncode == 0

    def traced() -> list[flow_pb2.Flow]:
        return [f for f in flows(lab, *connection(client.ipv4, 41003), since=start) if f.event_type.type == 4]

    traces = polled(traced, closed)  # the connection's last packet is stored, and so every one before it
    assert traces and all(f.trace_observation_point == flow_pb2.TO_ENDPOINT for f in traces)
    assert not any(f.flowscope.aggregated for f in traces)
