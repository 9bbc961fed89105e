"""Network policy: a YAML file of Cilium-shaped rules, compiled into the datapath's identity-keyed maps.

manager = PolicyManager(datapath, registry)
manager.apply(Path("policy.yaml").read_text(), "policy.yaml")  # PolicyError says where and why
manager.check("default/client", "default/server", 6, 9000).answer.ingress.allowed
"""

from flowscope.observer.policy.compile import Compiled, Entry, compile_policies
from flowscope.observer.policy.identities import Endpoints
from flowscope.observer.policy.manager import Check, PolicyManager, Status
from flowscope.observer.policy.parse import PolicyError, parse_policies
from flowscope.observer.policy.rules import RuleOrigin, RuleTable

__all__ = [
    "Check",
    "Compiled",
    "Endpoints",
    "Entry",
    "PolicyError",
    "PolicyManager",
    "RuleOrigin",
    "RuleTable",
    "Status",
    "compile_policies",
    "parse_policies",
]
