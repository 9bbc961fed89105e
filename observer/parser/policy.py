"""The policy rule behind a verdict, as a flow names it: flowscope's rule name, and Hubble's policy lists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flowscope.api.flow import flow_pb2

if TYPE_CHECKING:
    from flowscope.observer.policy import RuleOrigin


class Rules(Protocol):
    """What the decoder asks of the agent's policy rule table (observer/policy/rules.py)."""

    def name(self, number: int) -> str | None: ...
    def origin(self, number: int) -> RuleOrigin | None: ...


def fill_policy(flow: flow_pb2.Flow, rule: int, rules: Rules, verdict: int, direction: int) -> None:
    """The rule behind a policy verdict: named in flowscope's part, and its policy where Hubble puts it, in
    the allowed_by or denied_by list of the verdict's direction (docs/reference/hubble-api.md, Flow)."""
    name = rules.name(rule)
    if name:
        flow.flowscope.policy_rule = name
    origin = rules.origin(rule)
    if origin is None or direction == flow_pb2.TRAFFIC_DIRECTION_UNKNOWN:
        return
    ingress = direction == flow_pb2.INGRESS
    if verdict == flow_pb2.FORWARDED:
        policies = flow.ingress_allowed_by if ingress else flow.egress_allowed_by
    elif verdict == flow_pb2.DROPPED:
        policies = flow.ingress_denied_by if ingress else flow.egress_denied_by
    else:
        return
    policies.add(
        name=origin.name,
        namespace=origin.namespace,
        labels=origin.labels,
        revision=origin.revision,
        kind=origin.kind,
    )
