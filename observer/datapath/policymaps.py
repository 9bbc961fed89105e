"""The policy maps (`policy`, `policy_enforce`) as the agent writes them, and the datapath's own answer to
"would this connection pass?" (the `policy_query` program).

A policy is written whole into the generation the datapath is not using (the low bit of the next revision),
then the revision in the runtime config is flipped, then the other generation is emptied: a packet sees the
old policy or the new one, never half of each. Connections re-check their verdict on their next packet because
the revision they were judged at is no longer the current one (bpf/include/flowscope/policy.h).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowscope.common.names import POLICY_MATCH_TYPES
from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run

INGRESS = 1
EGRESS = 2
DIRECTION_NAMES = {INGRESS: "ingress", EGRESS: "egress"}

ETH_HLEN = 14
_QUERY = struct.Struct("<16s16sBBH")  # struct fs_policy_query's question
_VERDICT = struct.Struct("<BBBxII")  # struct fs_verdict
_ANSWER = struct.Struct("<II")


@dataclass(frozen=True, order=True)
class PolicyKey:
    """One entry's key: `subject` (an endpoint identity) exchanging `proto`/`dport` with `peer` (0: any)."""

    subject: int
    direction: int  # INGRESS or EGRESS
    peer: int = 0
    proto: int = 0
    dport: int = 0


@dataclass(frozen=True)
class PolicyValue:
    rule: int  # the rule that made the entry (the agent's rule table)
    deny: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the datapath decides for one direction; `enforced` False means no policy covers it (allowed)."""

    enforced: bool
    allowed: bool
    match: int
    rule: int
    drop_reason: int

    @property
    def match_name(self) -> str:
        return POLICY_MATCH_TYPES.get(self.match, str(self.match))


@dataclass(frozen=True)
class QueryAnswer:
    source_identity: int
    destination_identity: int
    egress: Verdict  # the source endpoint's egress policy
    ingress: Verdict  # the destination endpoint's ingress policy


class PolicyMaps:
    """The agent's handle on the policy maps of one loaded datapath."""

    def __init__(self, bpf: Any, query_fd: int) -> None:
        self._policy = bpf[b"policy"]
        self._enforce = bpf[b"policy_enforce"]
        self._query_fd = query_fd

    def write_generation(
        self, generation: int, entries: Mapping[PolicyKey, PolicyValue], enforced: Mapping[int, int]
    ) -> None:
        """Make generation `generation` (0 or 1) exactly `entries`, and `enforced` (subject -> direction bits)."""
        self.clear_generation(generation)
        for key, value in entries.items():
            leaf = self._policy.Leaf()
            leaf.rule, leaf.deny = value.rule, int(value.deny)
            self._policy[self._key(key, generation)] = leaf
        for subject, directions in enforced.items():
            ekey = self._enforce.Key()
            ekey.subject, ekey.gen = subject, generation
            evalue = self._enforce.Leaf()
            evalue.directions = directions
            self._enforce[ekey] = evalue

    def clear_generation(self, generation: int) -> None:
        for key in [k for k in self._policy if (k.dir_gen >> 7) == generation]:
            del self._policy[key]
        for ekey in [k for k in self._enforce if k.gen == generation]:
            del self._enforce[ekey]

    def entries(self, generation: int) -> dict[PolicyKey, PolicyValue]:
        """What generation `generation` holds (tests and `policy show` read it back)."""
        out = {}
        for key, value in self._policy.items():
            if (key.dir_gen >> 7) == generation:
                pkey = PolicyKey(key.subject, key.dir_gen & 0x7F, key.peer, key.proto, key.dport)
                out[pkey] = PolicyValue(value.rule, bool(value.deny))
        return out

    def enforced(self, generation: int) -> dict[int, int]:
        return {k.subject: v.directions for k, v in self._enforce.items() if k.gen == generation}

    def _key(self, key: PolicyKey, generation: int) -> Any:
        ckey = self._policy.Key()
        ckey.subject, ckey.peer, ckey.dport, ckey.proto = key.subject, key.peer, key.dport, key.proto
        ckey.dir_gen = key.direction | (generation << 7)
        return ckey

    def query(self, source: str, destination: str, proto: int, dport: int) -> QueryAnswer:
        """Would a connection from `source` to `destination`:`dport` pass? Answered by the datapath's own
        ipcache and policy lookups, with the policy in force."""
        src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
        if src.version != dst.version:
            raise ValueError(f"{source} and {destination} are not of one IP family")
        ipv6 = src.version == 6
        question = _QUERY.pack(src.packed.ljust(16, b"\0"), dst.packed.ljust(16, b"\0"), int(ipv6), proto, dport)
        packet = bytes(ETH_HLEN) + question + bytes(_ANSWER.size + 2 * _VERDICT.size)
        result = prog_test_run(self._query_fd, packet)
        if result.retval != TC_ACT_OK:
            raise RuntimeError("the datapath's policy_query program failed")
        out = result.data_out[ETH_HLEN + _QUERY.size :]
        src_id, dst_id = _ANSWER.unpack_from(out)
        egress = _verdict(out, _ANSWER.size)
        ingress = _verdict(out, _ANSWER.size + _VERDICT.size)
        return QueryAnswer(src_id, dst_id, egress, ingress)


def _verdict(buf: bytes, offset: int) -> Verdict:
    enforced, allowed, match, rule, reason = _VERDICT.unpack_from(buf, offset)
    return Verdict(bool(enforced), bool(allowed), match, rule, reason)
