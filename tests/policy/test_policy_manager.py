"""The policy manager on a real datapath: apply is all or nothing, new endpoints follow the policy, rule numbers
stay put, and `check` is answered by the datapath's own lookups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from flowscope.observer.datapath import Datapath, DatapathConfig
from flowscope.observer.datapath.policymaps import INGRESS
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import Cluster, Endpoint
from flowscope.observer.policy import PolicyError, PolicyManager

pytestmark = pytest.mark.bpf

POLICY = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
      - fromCIDR: [198.51.100.0/24]
"""


def pod(id_: int, name: str, app: str, ip: str) -> Endpoint:
    return Endpoint(id_, "node1", "default", name, {"app": app}, f"lxc{id_}", ipv4=ip)


CLIENT = pod(1001, "client", "client", "10.200.1.11")
SERVER = pod(1002, "server", "server", "10.200.1.12")


@pytest.fixture
def setup() -> Iterator[tuple[Datapath, EndpointRegistry, PolicyManager]]:
    with Datapath(DatapathConfig(ring_buffer_pages=64)) as dp:
        registry = EndpointRegistry("node1", Cluster(endpoints=(CLIENT, SERVER)))
        dp.replace_ipcache({ep.ipv4: ep.identity for ep in (CLIENT, SERVER)})
        yield dp, registry, PolicyManager(dp, registry)


def test_apply_installs_a_revision_and_check_asks_the_datapath(
    setup: tuple[Datapath, EndpointRegistry, PolicyManager],
) -> None:
    dp, _, manager = setup
    status = manager.apply(POLICY, "p.yaml")
    assert status.revision == 1 and dp.maps.read_config().policy_rev == 1
    assert dp.policy.enforced(1) == {SERVER.identity: INGRESS} and dp.policy.enforced(0) == {}
    assert set(dp.maps.ipcache_entries()) >= set(status.compiled.ipcache)  # the CIDR's identity, beside the pods
    allowed = manager.check("client", "default/server", 6, 9000).answer
    assert allowed.ingress.allowed and manager.rule_name(allowed.ingress.rule) == "server-in/ingress/0"
    from_cidr = manager.check("198.51.100.7", "server", 17, 53).answer
    assert from_cidr.ingress.allowed and manager.rule_name(from_cidr.ingress.rule) == "server-in/ingress/1"
    assert not manager.check("203.0.113.1", "server", 6, 9000).answer.ingress.allowed
    with pytest.raises(PolicyError, match="no pod 'nobody'"):
        manager.check("nobody", "server", 6, 1)


def test_a_bad_file_changes_nothing(setup: tuple[Datapath, EndpointRegistry, PolicyManager]) -> None:
    dp, _, manager = setup
    manager.apply(POLICY)
    with pytest.raises(PolicyError):
        manager.apply("policies: [{name: x}]")
    assert manager.status.revision == 1 and dp.maps.read_config().policy_rev == 1
    assert manager.check("client", "server", 6, 9000).answer.ingress.allowed


def test_the_policy_follows_the_cluster(setup: tuple[Datapath, EndpointRegistry, PolicyManager]) -> None:
    dp, registry, manager = setup
    manager.apply(POLICY)
    assert not manager.refresh()  # nothing changed
    newcomer = replace(pod(1003, "client-2", "client", "10.200.1.13"), namespace="other")  # a new identity
    relabelled = replace(CLIENT, labels={"app": "other"})
    registry.update(Cluster(endpoints=(relabelled, SERVER, newcomer)))
    dp.replace_ipcache({ep.ipv4: ep.identity for ep in (relabelled, SERVER, newcomer)})
    assert manager.refresh()
    assert manager.status.revision == 2 and dp.maps.read_config().policy_rev == 2
    assert manager.check("other/client-2", "server", 6, 9000).answer.ingress.allowed
    assert not manager.check("client", "server", 6, 9000).answer.ingress.allowed  # its labels no longer match
    assert manager.rule_name(1) == "server-in/ingress/0"  # numbers never move


def test_an_empty_policy_enforces_nothing(setup: tuple[Datapath, EndpointRegistry, PolicyManager]) -> None:
    dp, _, manager = setup
    manager.apply(POLICY)
    manager.apply("policies: []")
    assert manager.status.revision == 2 and dp.policy.enforced(0) == {} and dp.policy.enforced(1) == {}
    answer = manager.check("10.200.1.99", "server", 6, 22).answer
    assert answer.ingress.allowed and not answer.ingress.enforced


def test_delete_removes_policies_by_name_or_all(setup: tuple[Datapath, EndpointRegistry, PolicyManager]) -> None:
    dp, _, manager = setup
    manager.apply(POLICY + "  - {name: client-out, endpointSelector: {matchLabels: {app: client}}, egress: [{}]}\n")
    assert not manager.check("client", "server", 6, 9000).answer.egress.allowed
    with pytest.raises(PolicyError, match="no policy named 'nope'"):
        manager.delete(["nope"])
    status = manager.delete(["client-out"])
    assert [p.name for p in status.policies] == ["server-in"] and status.revision == 2
    assert manager.check("client", "server", 6, 9000).answer.egress.allowed
    assert [p.name for p in manager.apply(status.text).policies] == ["server-in"]  # what is left reads back
    status = manager.delete()
    assert (status.policies, status.text, status.revision) == ((), "", 4)
    assert dp.policy.enforced(status.revision & 1) == {}
    assert manager.check("client", "server", 6, 22).answer.ingress.allowed
