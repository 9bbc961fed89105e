"""The policy compiler: YAML in, the datapath's map entries out (no kernel needed)."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from flowscope.observer.datapath.policymaps import EGRESS, INGRESS, PolicyKey
from flowscope.observer.metadata import Cluster, Endpoint, identity_of
from flowscope.observer.policy import Compiled, Endpoints, Entry, PolicyError, compile_policies, parse_policies
from flowscope.observer.policy.identities import CIDR_IDENTITY_BASE, cidr_identities

TCP, UDP, SCTP, ICMP = 6, 17, 132, 1
HOST, WORLD, REMOTE_NODE = 1, 2, 6


def pod(name: str, namespace: str = "default", **labels: str) -> Endpoint:
    return Endpoint(id=hash(name) % 1000 + 1, node="node1", namespace=namespace, pod=name, labels=labels, interface="x")


CLUSTER = Cluster(
    name="lab",
    endpoints=(
        pod("client", app="client"),
        pod("server", app="server"),
        pod("server-2", app="server"),  # same labels: same identity
        pod("web", "web", app="web"),
        pod("coredns", "kube-system", **{"k8s-app": "kube-dns"}),
    ),
)
ENDPOINTS = Endpoints.of(CLUSTER)


def ident(app: str, namespace: str = "default") -> int:
    return identity_of({"app": app, "io.kubernetes.pod.namespace": namespace})


CLIENT, SERVER, WEB = ident("client"), ident("server"), ident("web", "web")
DNS = identity_of({"k8s-app": "kube-dns", "io.kubernetes.pod.namespace": "kube-system"})


def compiled(yaml_text: str) -> Compiled:
    return compile_policies(parse_policies(textwrap.dedent(yaml_text)), ENDPOINTS)


def allows(result: Compiled) -> dict[PolicyKey, str]:
    return {k: e.rule for k, e in result.entries.items() if not e.deny}


def denies(result: Compiled) -> dict[PolicyKey, str]:
    return {k: e.rule for k, e in result.entries.items() if e.deny}


def test_label_peers_and_ports_become_l3_l4_keys() -> None:
    result = compiled(
        """
        policies:
          - name: server-in
            endpointSelector: {matchLabels: {app: server}}
            ingress:
              - fromEndpoints: [{matchLabels: {app: client}}]
                toPorts: [{ports: [{port: "9000", protocol: TCP}, {port: 9001, protocol: UDP}]}]
        """
    )
    assert allows(result) == {
        PolicyKey(SERVER, INGRESS, CLIENT, TCP, 9000): "server-in/ingress/0",
        PolicyKey(SERVER, INGRESS, CLIENT, UDP, 9001): "server-in/ingress/0",
    }
    assert result.enforced == {SERVER: INGRESS}
    assert result.subjects == {SERVER: ("default/server", "default/server-2")}
    assert result.ipcache == {}


def test_no_peer_is_any_peer_and_no_port_is_any_port() -> None:
    result = compiled(
        """
        policies:
          - name: p
            endpointSelector: {matchLabels: {app: web}}
            ingress:
              - toPorts: [{ports: [{port: "80"}]}]      # anyone, port 80 of TCP, UDP or SCTP
              - fromEntities: [host]                    # the host, anything
        """
    )
    assert set(allows(result)) == {
        PolicyKey(WEB, INGRESS, 0, TCP, 80),
        PolicyKey(WEB, INGRESS, 0, UDP, 80),
        PolicyKey(WEB, INGRESS, 0, SCTP, 80),
        PolicyKey(WEB, INGRESS, HOST, 0, 0),
    }


def test_an_empty_rule_enforces_a_direction_and_allows_nothing() -> None:
    result = compiled(
        """
        policies:
          - name: lockdown
            endpointSelector: {}
            egress: [{}]
        """
    )
    assert result.entries == {}
    assert result.enforced == dict.fromkeys((CLIENT, SERVER, WEB, DNS), EGRESS)


def test_namespaced_policy_selects_in_its_namespace_unless_told_otherwise() -> None:
    result = compiled(
        """
        policies:
          - name: ns
            namespace: default
            endpointSelector: {}
            egress:
              - toEndpoints: [{}]                        # every pod of default
              - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]
                toPorts: [{ports: [{port: "53", protocol: UDP}]}]
        """
    )
    assert set(result.enforced) == {CLIENT, SERVER}
    peers = {(k.subject, k.peer, k.proto, k.dport) for k in allows(result)}
    assert peers == {(s, p, 0, 0) for s in (CLIENT, SERVER) for p in (CLIENT, SERVER)} | {
        (s, DNS, UDP, 53) for s in (CLIENT, SERVER)
    }


def test_match_expressions() -> None:
    result = compiled(
        """
        policies:
          - name: expr
            endpointSelector:
              matchExpressions: [{key: app, operator: In, values: [client, web]}]
            ingress:
              - fromEndpoints: [{matchExpressions: [{key: app, operator: DoesNotExist}]}]
        """
    )
    assert set(result.enforced) == {CLIENT, WEB}
    assert {k.peer for k in result.entries} == {DNS}


def test_deny_wins_where_it_overlaps_an_allow() -> None:
    result = compiled(
        """
        policies:
          - name: allow-80
            endpointSelector: {matchLabels: {app: server}}
            ingress:
              - toPorts: [{ports: [{port: "80", protocol: TCP}]}]     # anyone to 80
              - fromEndpoints: [{matchLabels: {app: client}}]         # the client to anything
          - name: no-client
            endpointSelector: {matchLabels: {app: server}}
            ingressDeny:
              - fromEndpoints: [{matchLabels: {app: client}}]
                toPorts: [{ports: [{port: "22", protocol: TCP}]}]
              - fromEndpoints: [{matchLabels: {app: web}}]
        """
    )
    assert denies(result) == {
        PolicyKey(SERVER, INGRESS, CLIENT, TCP, 22): "no-client/ingressDeny/0",
        PolicyKey(SERVER, INGRESS, WEB, 0, 0): "no-client/ingressDeny/1",
        PolicyKey(SERVER, INGRESS, WEB, TCP, 80): "no-client/ingressDeny/1",  # the web's share of "anyone to 80"
    }
    assert allows(result) == {
        PolicyKey(SERVER, INGRESS, 0, TCP, 80): "allow-80/ingress/0",
        PolicyKey(SERVER, INGRESS, CLIENT, 0, 0): "allow-80/ingress/1",
    }


def test_same_key_allowed_and_denied_is_denied() -> None:
    result = compiled(
        """
        policies:
          - name: both
            endpointSelector: {matchLabels: {app: client}}
            egress: [{toEntities: [world]}]
            egressDeny: [{toEntities: [world]}]
        """
    )
    assert result.entries == {PolicyKey(CLIENT, EGRESS, WORLD, 0, 0): Entry("both/egressDeny/0", deny=True)}


def test_cidrs_get_identities_of_their_own_and_world_covers_them() -> None:
    result = compiled(
        """
        policies:
          - name: out
            endpointSelector: {matchLabels: {app: client}}
            egress:
              - toCIDR: [10.77.0.0/24]
              - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.77.0.254/32]}]
            egressDeny:
              - toEntities: [world]
                toPorts: [{ports: [{port: "25", protocol: TCP}]}]
        """
    )
    ids = cidr_identities(map(ipaddress.ip_network, ["10.77.0.0/24", "10.0.0.0/8", "10.77.0.254/32"]))
    assert result.ipcache == ids
    assert all(i > CIDR_IDENTITY_BASE for i in ids.values())
    net, wide, hole = (ids[ipaddress.ip_network(n)] for n in ("10.77.0.0/24", "10.0.0.0/8", "10.77.0.254/32"))
    by_rule = {rule: {k.peer for k, r in allows(result).items() if r == rule} for rule in allows(result).values()}
    assert by_rule == {
        "out/egress/0": {net, hole},  # the /24, and the narrower prefix inside it
        "out/egress/1": {wide},  # the /8 (the /24 in it already has its key), not the carve-out
    }
    assert {k.peer for k, e in result.entries.items() if e.deny} == {WORLD, net, wide, hole}


def test_an_ipv6_prefix_over_the_v4_mapped_range_keeps_ipv4_world() -> None:
    result = compiled(
        """
        policies:
          - name: v6
            endpointSelector: {matchLabels: {app: client}}
            egress: [{toCIDR: ["::/0"]}]
        """
    )
    assert result.ipcache[ipaddress.ip_network("0.0.0.0/0")] == WORLD
    assert ipaddress.ip_network("::/0") in result.ipcache


def test_cilium_network_policy_documents() -> None:
    result = compiled(
        """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: cnp, namespace: web}
        spec:
          endpointSelector: {}
          ingress: [{fromEntities: [cluster]}]
        ---
        apiVersion: cilium.io/v2
        kind: CiliumClusterwideNetworkPolicy
        metadata: {name: ccnp}
        spec:
          endpointSelector: {matchLabels: {app: client}}
          egress: [{toEntities: [all]}]
        """
    )
    assert result.enforced == {WEB: INGRESS, CLIENT: EGRESS}
    assert {k.peer for k in result.entries if k.subject == WEB} == {CLIENT, SERVER, WEB, DNS, HOST, REMOTE_NODE}
    assert {k.peer for k in result.entries if k.subject == CLIENT} == {0}


def test_port_ranges_and_icmp() -> None:
    result = compiled(
        """
        policies:
          - name: r
            endpointSelector: {matchLabels: {app: server}}
            ingress:
              - toPorts: [{ports: [{port: "8000", endPort: 8002, protocol: TCP}, {protocol: ICMP}]}]
        """
    )
    assert {(k.proto, k.dport) for k in result.entries} == {(TCP, 8000), (TCP, 8001), (TCP, 8002), (ICMP, 0)}


def test_a_selector_that_selects_nobody_yet_still_enforces() -> None:
    result = compiled(
        """
        policies:
          - name: future
            endpointSelector: {matchLabels: {app: server}}
            ingress: [{fromEndpoints: [{matchLabels: {app: not-deployed}}]}]
        """
    )
    assert result.entries == {} and result.enforced == {SERVER: INGRESS}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies: [{name: a, endpointSelector: {}, ingres: []}]", "policies[0].ingres: unknown field"),
        ("policies: [{endpointSelector: {}}]", "policies[0].name: a policy needs a name"),
        ("policies: [{name: a}]", "policies[0]: missing endpointSelector"),
        (
            "policies: [{name: a, endpointSelector: {}, ingress: [{toCIDR: [10.0.0.0/8]}]}]",
            "policies[0].ingress[0].toCIDR: unknown field",
        ),
        (
            "policies: [{name: a, endpointSelector: {}, egress: [{toCIDR: [10.0.0.1/8]}]}]",
            "policies[0].egress[0].toCIDR[0]: 10.0.0.1/8 has host bits set",
        ),
        (
            "policies: [{name: a, endpointSelector: {}, egress: [{toPorts: [{ports: [{port: http}]}]}]}]",
            "policies[0].egress[0].toPorts[0].ports[0].port: a port is a number 0-65535 (named ports",
        ),
        (
            "policies: [{name: a, endpointSelector: {}, egress: [{toPorts: [{ports: [{port: 1, protocol: TPC}]}]}]}]",
            "policies[0].egress[0].toPorts[0].ports[0].protocol: unknown protocol 'TPC'",
        ),
        (
            "policies: [{name: a, endpointSelector: {}, egress: [{toEntities: [kube-apiserver]}]}]",
            "policies[0].egress[0].toEntities[0]: unknown entity 'kube-apiserver'",
        ),
        (
            "policies: [{name: a, endpointSelector: {}, egress: [{toPorts: [{ports: [{port: 9, endPort: 8}]}]}]}]",
            "endPort: 8 needs a port at or below it",
        ),
        (
            "policies: [{name: a, endpointSelector: {},\n"
            "  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]}]}]",
            "policies[0].egress[0].toCIDRSet[0].except[0]: 11.0.0.0/8 is not inside 10.0.0.0/8",
        ),
        (
            "policies: [{name: a, endpointSelector: {matchExpressions: [{key: x, operator: Is}]}}]",
            "policies[0].endpointSelector.matchExpressions[0].operator: 'Is' is not one of",
        ),
        ("policies: [{name: a, endpointSelector: {}}, {name: a, endpointSelector: {}}]", "two policies are named 'a'"),
        ("policies: {name: a}", "policies: expected a list"),
        ("kind: NetworkPolicy", "kind: 'NetworkPolicy' is not one of CiliumNetworkPolicy"),
        ("policies: [", "not valid YAML"),
        ("- just\n- a list", "the file: expected a mapping"),
    ],
)
def test_errors_say_where_and_why(text: str, message: str) -> None:

    with pytest.raises(PolicyError) as caught:
        parse_policies(text)
    assert message in str(caught.value)


def test_an_empty_file_is_no_policy() -> None:
    assert parse_policies("") == []
    assert parse_policies("policies: []") == []


def test_a_policy_that_selects_no_pod_is_named() -> None:
    policies = parse_policies(
        textwrap.dedent("""
        policies:
          - {name: typo, endpointSelector: {matchLabels: {app: sever}}, ingress: [{}]}
          - {name: fine, endpointSelector: {matchLabels: {app: server}}, ingress: [{}]}
        """)
    )
    assert compile_policies(policies, ENDPOINTS).unselected == ("typo",)


def test_a_yaml_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policies("policies:\n  - name: x\n    endpointSelector: {a: b\n", "lab-policy.yaml")
    assert str(raised.value).startswith("lab-policy.yaml, line 4, column 1: not valid YAML: ")
    assert "<unicode string>" not in str(raised.value)
