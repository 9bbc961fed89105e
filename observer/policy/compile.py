"""Compiling policies into the datapath's policy maps: (subject, direction, peer, protocol, port) -> allow or
deny, plus the directions each subject is in default-deny, plus the CIDR identities the ipcache needs.

The datapath takes the first of six keys that exists, from the most specific to the least (bpf policy.h), and
obeys it. Deny must still win over allow wherever both match, as in Cilium. So after every rule has given its
keys, each allow key that overlaps a deny key gets a deny key at the overlap: the overlap is at least as
specific as the allow key, so the datapath finds it first. (Allow keys never need such care among themselves.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flowscope.common.names import IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD
from flowscope.observer.datapath.policymaps import EGRESS, INGRESS, PolicyKey
from flowscope.observer.policy.identities import (
    RESERVED_ENTITIES,
    Endpoints,
    cidr_identities,
    inside,
    ipcache_additions,
)
from flowscope.observer.policy.model import SECTIONS, IPNetwork, Policy, Rule, Selector

ANY = 0  # a wildcard peer, protocol or port


@dataclass(frozen=True)
class Entry:
    rule: str  # "<policy>/<section>/<index>"
    deny: bool


@dataclass(frozen=True)
class Compiled:
    entries: dict[PolicyKey, Entry] = field(default_factory=dict)
    enforced: dict[int, int] = field(default_factory=dict)  # subject identity -> INGRESS | EGRESS bits
    ipcache: dict[IPNetwork, int] = field(default_factory=dict)  # CIDR prefixes -> their identities
    subjects: dict[int, tuple[str, ...]] = field(default_factory=dict)  # subject identity -> its pods
    unselected: tuple[str, ...] = ()  # policies whose endpointSelector matches no pod: most likely a typo


def rule_name(policy: Policy, section: str, index: int) -> str:
    """How the datapath's rules are named: "<policy>/<section>/<index>" (server-in/ingress/0)."""
    return f"{policy.name}/{section}/{index}"


def policy_of(rule: str) -> str:
    """The name of the policy a rule name (rule_name) belongs to; policy names may hold slashes, sections not."""
    return rule.rsplit("/", 2)[0]


def compile_policies(policies: Sequence[Policy], endpoints: Endpoints) -> Compiled:
    cidrs = cidr_identities(_prefixes(policies))
    entries: dict[PolicyKey, Entry] = {}
    enforced: dict[int, int] = {}
    unselected: list[str] = []
    for policy in policies:
        subjects = [i for i, labels in sorted(endpoints.labels.items()) if policy.selects.matches(labels)]
        if not subjects:
            unselected.append(policy.name)
        for section in SECTIONS:
            rules = policy.section(section)
            direction = INGRESS if section.startswith("ingress") else EGRESS
            if rules:
                for subject in subjects:
                    enforced[subject] = enforced.get(subject, 0) | direction
            for index, rule in enumerate(rules):
                entry = Entry(rule_name(policy, section, index), deny=section.endswith("Deny"))
                peers = _peers(rule, policy.namespace, endpoints, cidrs)
                for subject in subjects:
                    for key in _keys(subject, direction, peers, rule):
                        _add(entries, key, entry)
    _deny_overlaps(entries)
    named = {subject: endpoints.pods.get(subject, ()) for subject in enforced}
    return Compiled(entries, enforced, ipcache_additions(cidrs), named, tuple(unselected))


def _prefixes(policies: Iterable[Policy]) -> set[IPNetwork]:
    return {
        prefix
        for policy in policies
        for section in SECTIONS
        for rule in policy.section(section)
        for cidr_set in rule.cidrs
        for prefix in (cidr_set.cidr, *cidr_set.excepts)
    }


def _peers(rule: Rule, namespace: str | None, endpoints: Endpoints, cidrs: dict[IPNetwork, int]) -> set[int]:
    """The peer identities a rule names; {ANY} when it names ports but no peer (or the entity `all`). An empty
    rule names nobody: it only puts its direction in default-deny, as `ingress: [{}]` does in Cilium."""
    if rule.any_peer:
        return {ANY} if rule.ports else set()
    if "all" in rule.entities:
        return {ANY}
    peers: set[int] = set()
    for selector in rule.endpoints:
        peers |= _selected(selector.within(namespace), endpoints)
    for cidr_set in rule.cidrs:
        peers |= {
            identity
            for prefix, identity in cidrs.items()
            if inside(prefix, cidr_set.cidr) and not any(inside(prefix, e) for e in cidr_set.excepts)
        }
    for entity in rule.entities:
        if entity == "world":
            peers |= {IDENTITY_WORLD, *cidrs.values()}
        elif entity == "cluster":
            peers |= {*endpoints.labels, IDENTITY_HOST, IDENTITY_REMOTE_NODE}
        else:
            peers |= RESERVED_ENTITIES[entity]
    return peers


def _selected(selector: Selector, endpoints: Endpoints) -> set[int]:
    return {identity for identity, labels in endpoints.labels.items() if selector.matches(labels)}


def _keys(subject: int, direction: int, peers: set[int], rule: Rule) -> list[PolicyKey]:
    ports = [pair for port_rule in rule.ports for pair in port_rule.map_keys()] or [(ANY, ANY)]
    return [PolicyKey(subject, direction, peer, proto, port) for peer in sorted(peers) for proto, port in ports]


def _add(entries: dict[PolicyKey, Entry], key: PolicyKey, entry: Entry) -> None:
    """The first rule to name a key keeps it, unless a later one denies it."""
    if key not in entries or (entry.deny and not entries[key].deny):
        entries[key] = entry


def _overlap(a: PolicyKey, b: PolicyKey) -> PolicyKey | None:
    """The key both match, or None: per field, a wildcard gives way to the other's value."""
    fields = []
    for x, y in ((a.peer, b.peer), (a.proto, b.proto), (a.dport, b.dport)):
        if x and y and x != y:
            return None
        fields.append(x or y)
    peer, proto, dport = fields
    if dport and not proto:
        return None  # the datapath has no "this port, any protocol" key
    return PolicyKey(a.subject, a.direction, peer, proto, dport)


def _deny_overlaps(entries: dict[PolicyKey, Entry]) -> None:
    by_side: dict[tuple[int, int], tuple[list[PolicyKey], list[PolicyKey]]] = {}
    for key, entry in entries.items():
        allows, denies = by_side.setdefault((key.subject, key.direction), ([], []))
        (denies if entry.deny else allows).append(key)
    for allows, denies in by_side.values():
        for deny in denies:
            for allow in allows:
                overlap = _overlap(allow, deny)
                if overlap is not None:
                    entries[overlap] = entries[deny]
