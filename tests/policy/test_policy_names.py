"""Policy verdicts name the policy that decided them, where Hubble puts it: an allowed connection's verdict in
`ingress_allowed_by`/`egress_allowed_by` of its direction, an explicitly denied one's in `*_denied_by`, each a
flow.Policy with Cilium's labels; and `flowscope observe --print-policy-names` prints them after the verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import (  # tests/ is on the path (its conftest): the lab helpers are shared
    TCP_CLIENT,
    UDP_CLIENT,
    apply_policy,
    connection,
    run_python,
    set_config,
    settle,
)

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import TCP_RR_PORT, UDP_ECHO_PORT

pytestmark = pytest.mark.bpf

# A namespaced policy on the server's ingress (a CiliumNetworkPolicy) and a cluster-wide one on the client's
# egress (a CiliumClusterwideNetworkPolicy): client -> server:9000 passes both; web/web -> server:9001/udp is denied.
POLICY = f"""
policies:
  - name: server-in
    namespace: default
    endpointSelector: {{matchLabels: {{app: server}}}}
    ingress:
      - fromEndpoints: [{{matchLabels: {{app: client}}}}]
        toPorts: [{{ports: [{{port: "{TCP_RR_PORT}", protocol: TCP}}]}}]
    ingressDeny:
      - fromEndpoints: [{{matchLabels: {{app: web, io.kubernetes.pod.namespace: web}}}}]  # another namespace
        toPorts: [{{ports: [{{port: "{UDP_ECHO_PORT}", protocol: UDP}}]}}]
  - name: client-out
    endpointSelector: {{matchLabels: {{app: client}}}}
    egress:
      - toEndpoints: [{{matchLabels: {{app: server}}}}]
        toPorts: [{{ports: [{{port: "{TCP_RR_PORT}", protocol: TCP}}]}}]
"""

LABEL = "k8s:io.cilium.k8s.policy."
SERVER_IN = flow_pb2.Policy(
    name="server-in",
    namespace="default",
    labels=[f"{LABEL}derived-from=CiliumNetworkPolicy", f"{LABEL}name=server-in", f"{LABEL}namespace=default"],
    revision=1,  # the lab's first apply
    kind="CiliumNetworkPolicy",
)
CLIENT_OUT = flow_pb2.Policy(
    name="client-out",
    labels=[f"{LABEL}derived-from=CiliumClusterwideNetworkPolicy", f"{LABEL}name=client-out"],
    revision=1,
    kind="CiliumClusterwideNetworkPolicy",
)
ALLOWED_SPORT, DENIED_SPORT = 42101, 42102


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-pnames") as lab:
        lab.up(traffic=False, agent=True)
        set_config(lab, "monitor-aggregation", "none")
        apply_policy(lab, POLICY)
        client, web, server = lab.pod("client"), lab.pod("web"), lab.pod("server")
        assert run_python(lab, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, ALLOWED_SPORT, 1).returncode == 0
        assert run_python(lab, "web", UDP_CLIENT, server.ipv4, UDP_ECHO_PORT, DENIED_SPORT).returncode != 0
        settle(lab, connection(client.ipv4, ALLOWED_SPORT), lambda fs: len(verdicts(fs)) >= 2)
        settle(lab, connection(web.ipv4, DENIED_SPORT), lambda fs: len(verdicts(fs)) >= 1)
        yield lab


def verdicts(flows: list[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
    return [f for f in flows if f.event_type.type == 5]


def by_lists(flow: flow_pb2.Flow) -> dict[str, list[flow_pb2.Policy]]:
    """The four lists of a flow that are not empty."""
    names = ("ingress_allowed_by", "egress_allowed_by", "ingress_denied_by", "egress_denied_by")
    return {name: list(getattr(flow, name)) for name in names if getattr(flow, name)}


def test_an_allowed_connection_names_the_allowing_policy_of_each_direction(lab: Lab) -> None:
    client = lab.pod("client")
    found = verdicts(settle(lab, connection(client.ipv4, ALLOWED_SPORT), lambda fs: len(verdicts(fs)) >= 2))
    by_direction = {f.traffic_direction: f for f in found}
    assert sorted(by_direction) == [flow_pb2.INGRESS, flow_pb2.EGRESS] and len(found) == 2
    egress, ingress = by_direction[flow_pb2.EGRESS], by_direction[flow_pb2.INGRESS]
    assert (egress.verdict, ingress.verdict) == (flow_pb2.FORWARDED, flow_pb2.FORWARDED)
    assert by_lists(egress) == {"egress_allowed_by": [CLIENT_OUT]}
    assert by_lists(ingress) == {"ingress_allowed_by": [SERVER_IN]}
    assert (egress.flowscope.policy_rule, ingress.flowscope.policy_rule) == (
        "client-out/egress/0",
        "server-in/ingress/0",
    )


def test_an_explicitly_denied_flow_names_the_denying_policy(lab: Lab) -> None:
    web = lab.pod("web")
    flows = settle(lab, connection(web.ipv4, DENIED_SPORT), lambda fs: len(verdicts(fs)) >= 1)
    [verdict] = verdicts(flows)
    assert (verdict.verdict, verdict.drop_reason_desc) == (flow_pb2.DROPPED, flow_pb2.POLICY_DENY)
    assert by_lists(verdict) == {"ingress_denied_by": [SERVER_IN]}
    assert all(not by_lists(f) for f in flows if f is not verdict)  # traces and drops carry no rule


def observe(lab: Lab, *argv: str) -> list[str]:
    """What `flowscope observe` says of the agent's policy verdicts, with `argv` added: each line's words from
    the match type to the verdict and its policies (`L3-L4 INGRESS ALLOWED BY ...`), sorted."""
    flowscope = str(Path(sys.executable).parent / "flowscope")
    where = f"unix://{lab.agent_socket('node1')}"
    command = [flowscope, "observe", "--server", where, "--type", "policy-verdict", "--color", "never", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return sorted(line.split("policy-verdict:", 1)[1].rsplit(" (", 1)[0] for line in done.stdout.splitlines())


def test_observe_prints_the_policy_names_after_the_verdict(lab: Lab) -> None:
    allowed = ["--ip", lab.pod("client").ipv4, "--port", str(ALLOWED_SPORT)]
    denied = ["--ip", lab.pod("web").ipv4, "--port", str(DENIED_SPORT)]
    assert observe(lab, "--print-policy-names", *allowed) == [
        "L3-L4 EGRESS ALLOWED BY client-out (CiliumClusterwideNetworkPolicy)",
        "L3-L4 INGRESS ALLOWED BY server-in (CiliumNetworkPolicy)",
    ]
    assert observe(lab, "--print-policy-names", *denied) == ["L3-L4 INGRESS DENIED BY server-in (CiliumNetworkPolicy)"]
    assert observe(lab, *allowed) == ["L3-L4 EGRESS ALLOWED", "L3-L4 INGRESS ALLOWED"]  # only when asked
