"""The table that names the rules behind the datapath's numbers, and the policy each came from, for the
flows and answers that carry a rule's number (fs_event.rule, a policy map entry's rule)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowscope.observer.policy.compile import policy_of
from flowscope.observer.policy.model import Policy


@dataclass(frozen=True)
class RuleOrigin:
    """The policy a rule came from, as a flow names it (flow.Policy), at the revision that put it in force."""

    name: str
    namespace: str
    kind: str
    labels: tuple[str, ...]
    revision: int


class RuleTable:
    """Rule names <-> the numbers the datapath carries, and the policy behind each. Numbers are never reused
    while the agent runs, so a verdict event decoded long after a reload still names the rule that made it; its
    policy is as last applied (a flow decoded after a reload names the new revision).

    `revision` counts applies and deletes, as Cilium's policy repository does: the recompiles that follow the
    cluster's endpoints install new datapath revisions but leave the rules as they were."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._origins: dict[str, RuleOrigin] = {}  # by policy name
        self.revision = 0

    def id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self._ids) + 1
            self._names[self._ids[name]] = name
        return self._ids[name]

    def name(self, number: int) -> str | None:
        return self._names.get(number)

    def origin(self, number: int) -> RuleOrigin | None:
        name = self._names.get(number)
        return self._origins.get(policy_of(name)) if name else None

    def enforce(self, policies: Sequence[Policy]) -> None:
        """A new revision of the policy: these are in force from now on."""
        self.revision += 1
        for policy in policies:
            origin = RuleOrigin(policy.name, policy.namespace or "", policy.kind, policy.labels, self.revision)
            self._origins[policy.name] = origin
