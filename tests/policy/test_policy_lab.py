"""Network policy on a lab with the real agent: exact flows through GetFlows for allowed and denied connections,
`flowscope policy check` agreeing with what packets meet, and a reload that keeps what is still allowed and cuts
what is not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import (  # tests/ is on the path (its conftest): the lab helpers are shared
    SERVER_IN_POLICY,
    TCP_CLIENT,
    UDP_CLIENT,
    apply_policy,
    connection,
    now,
    open_connection,
    run_python,
    set_config,
    settle,
)

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import TCP_RR_PORT, UDP_ECHO_PORT

pytestmark = pytest.mark.bpf

BOTH_ALLOWED = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: web}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
"""

CLIENT_ONLY = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-policy") as lab:
        lab.up(traffic=False, agent=True)
        set_config(lab, "monitor-aggregation", "none")  # every packet, to check flows one by one
        yield lab


@pytest.fixture
def policy(lab: Lab) -> Lab:
    apply_policy(lab, SERVER_IN_POLICY)
    return lab


def ours(flows: list[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
    """The datapath's flows: the kernel's own drop reports (a colleague's part) are left out here."""
    return [f for f in flows if not f.flowscope.kernel_drop_reason]


def is_verdict(flow: flow_pb2.Flow) -> bool:
    return flow.event_type.type == 5


def is_drop(flow: flow_pb2.Flow) -> bool:
    return flow.event_type.type == 1


def test_an_allowed_connection_is_allowed_then_forwarded(policy: Lab) -> None:
    client, server = policy.pod("client"), policy.pod("server")
    start = now()
    done = run_python(policy, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, 42001, 2)
    assert done.returncode == 0, done.stdout
    flows = ours(
        settle(
            policy,
            connection(client.ipv4, 42001),
            lambda fs: sum(f.IP.source == server.ipv4 and f.l4.TCP.flags.FIN for f in fs) >= 2,
        )
    )
    flows = [f for f in flows if f.time.ToNanoseconds() >= start.ToNanoseconds()]

    syn = [f for f in flows if f.l4.TCP.flags.SYN and not f.l4.TCP.flags.ACK]
    assert [(f.event_type.type, f.trace_observation_point, f.verdict) for f in syn] == [
        (4, flow_pb2.FROM_ENDPOINT, flow_pb2.FORWARDED),
        (5, flow_pb2.UNKNOWN_POINT, flow_pb2.FORWARDED),  # ALLOWED
        (4, flow_pb2.TO_ENDPOINT, flow_pb2.FORWARDED),
    ]
    verdict = syn[1]
    assert verdict.traffic_direction == flow_pb2.INGRESS
    assert verdict.policy_match_type == 2  # L3-L4
    assert verdict.flowscope.policy_rule == "server-in/ingress/0"
    assert verdict.destination.pod_name == "server" and verdict.interface.name == server.ifname
    assert [f.trace_reason for f in syn if f.event_type.type == 4] == [flow_pb2.NEW, flow_pb2.NEW]
    assert sum(map(is_verdict, flows)) == 1  # a connection's first packet only
    assert not any(map(is_drop, flows))

    traces = [f for f in flows if f.event_type.type == 4]
    replies = [f for f in traces if f.IP.source == server.ipv4]
    onward = [f for f in traces if f.IP.source == client.ipv4 and f not in syn]
    assert replies and all(f.is_reply.value and f.trace_reason == flow_pb2.REPLY for f in replies)
    assert onward and all(f.HasField("is_reply") and not f.is_reply.value for f in onward)
    assert all(f.trace_reason == flow_pb2.ESTABLISHED for f in onward)
    # the connection's direction as each endpoint sees it (replies included): egress for the client's side
    sides = {(f.interface.name, f.traffic_direction) for f in traces}
    assert sides == {(client.ifname, flow_pb2.EGRESS), (server.ifname, flow_pb2.INGRESS)}


def test_a_denied_connection_is_denied_and_dropped_at_the_server(policy: Lab) -> None:
    web, server = policy.pod("web"), policy.pod("server")
    start = now()
    done = run_python(policy, "web", TCP_CLIENT, server.ipv4, TCP_RR_PORT, 42002, 1)
    assert done.returncode != 0  # the SYN (and its retransmissions) never got through
    flows = ours(settle(policy, connection(web.ipv4, 42002), lambda fs: sum(map(is_drop, fs)) >= 2))
    flows = [f for f in flows if f.time.ToNanoseconds() >= start.ToNanoseconds()]

    verdicts = [f for f in flows if is_verdict(f)]
    drops = [f for f in flows if is_drop(f)]
    assert len(verdicts) == 1 and len(drops) >= 2  # one verdict; a drop for every SYN sent
    verdict = verdicts[0]
    assert (verdict.verdict, verdict.drop_reason_desc) == (flow_pb2.DROPPED, flow_pb2.POLICY_DENIED)
    assert (verdict.traffic_direction, verdict.policy_match_type) == (flow_pb2.INGRESS, 0)
    for drop in drops:
        assert (drop.verdict, drop.drop_reason_desc, drop.drop_reason) == (
            flow_pb2.DROPPED,
            flow_pb2.POLICY_DENIED,
            133,
        )
        assert drop.interface.name == server.ifname  # at the server's to-endpoint point
        assert drop.traffic_direction == flow_pb2.INGRESS
        assert (drop.source.pod_name, drop.destination.pod_name) == ("web", "server")
    assert flows.index(verdict) < flows.index(drops[0])
    assert not any(f.trace_observation_point == flow_pb2.TO_ENDPOINT for f in flows)  # nothing reached it


def test_an_explicit_deny_is_policy_deny(policy: Lab) -> None:
    web, server = policy.pod("web"), policy.pod("server")
    assert run_python(policy, "web", UDP_CLIENT, server.ipv4, UDP_ECHO_PORT, 42003).returncode != 0
    seen = settle(policy, connection(web.ipv4, 42003), lambda fs: any(map(is_drop, fs)))
    # The datapath said why it dropped the packet; the kernel's TC_INGRESS/TC_EGRESS for it is left out.
    assert [f for f in seen if f.flowscope.kernel_drop_reason.startswith("TC_")] == []
    flows = ours(seen)
    [verdict] = [f for f in flows if is_verdict(f)]
    [drop] = [f for f in flows if is_drop(f)]
    assert (verdict.drop_reason_desc, verdict.policy_match_type) == (flow_pb2.POLICY_DENY, 2)
    assert verdict.flowscope.policy_rule == "server-in/ingressDeny/0"
    assert (drop.drop_reason_desc, drop.drop_reason) == (flow_pb2.POLICY_DENY, 181)


@pytest.mark.parametrize(
    ("source", "port", "protocol", "allowed", "says"),
    [
        ("client", TCP_RR_PORT, "tcp", True, "allowed by server-in/ingress/0 (L3-L4)"),
        ("web", TCP_RR_PORT, "tcp", False, "denied (no rule allows it): POLICY_DENIED"),
        ("client", UDP_ECHO_PORT, "udp", False, "denied (no rule allows it): POLICY_DENIED"),
        ("web", UDP_ECHO_PORT, "udp", False, "denied by server-in/ingressDeny/0: POLICY_DENY"),
    ],
)
def test_check_answers_what_the_packets_meet(
    policy: Lab, source: str, port: int, protocol: str, allowed: bool, says: str
) -> None:
    server = policy.pod("server")
    flowscope = str(Path(sys.executable).parent / "flowscope")
    where = f"unix://{policy.agent_socket('node1')}"
    argv = [flowscope, "policy", "check", source, "default/server", "--port", str(port), "--protocol", protocol]
    cli = subprocess.run([*argv, "--server", where], capture_output=True, text=True, timeout=30, check=False)
    assert cli.returncode == (0 if allowed else 3), cli.stderr
    assert cli.stdout.startswith("ALLOWED" if allowed else "DENIED")
    assert f"ingress of default/server: {says}" in cli.stdout
    sport = 42010 + 2 * (protocol == "udp") + (source == "web")
    script, args = (TCP_CLIENT, (sport, 1)) if protocol == "tcp" else (UDP_CLIENT, (sport,))
    assert (run_python(policy, source, script, server.ipv4, port, *args).returncode == 0) == allowed


def test_reload_keeps_what_is_still_allowed_and_cuts_the_rest(lab: Lab) -> None:
    server = lab.pod("server")
    apply_policy(lab, BOTH_ALLOWED)
    with (
        open_connection(lab, "client", server.ipv4, TCP_RR_PORT, 42020) as kept,
        open_connection(lab, "web", server.ipv4, TCP_RR_PORT, 42021) as cut,
    ):
        assert (kept.ask(), cut.ask()) == ("ok", "ok")
        start = now()
        status = apply_policy(lab, CLIENT_ONLY)
        assert kept.ask() == "ok"
        assert cut.ask() == "failed"
        assert kept.ask() == "ok"
    web = lab.pod("web")
    cut_flows = ours(settle(lab, connection(web.ipv4, 42021), lambda fs: any(map(is_drop, fs))))
    cut_flows = [f for f in cut_flows if f.time.ToNanoseconds() >= start.ToNanoseconds()]
    verdicts = [f for f in cut_flows if is_verdict(f)]
    assert len(verdicts) == 1 and verdicts[0].drop_reason_desc == flow_pb2.POLICY_DENIED
    assert any(is_drop(f) and f.drop_reason_desc == flow_pb2.POLICY_DENIED for f in cut_flows)
    kept_flows = ours(settle(lab, connection(lab.pod("client").ipv4, 42020), lambda fs: True))
    after = [f for f in kept_flows if f.time.ToNanoseconds() >= start.ToNanoseconds()]
    assert after and not any(is_verdict(f) or is_drop(f) for f in after)  # re-checked quietly, still allowed
    assert status.revision >= 2
