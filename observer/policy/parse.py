"""Reading a policy file: YAML in, model.Policy out, or a PolicyError that says where and why.

Two spellings are accepted, so a person can start from either:

    policies:                          # flowscope's own: a list of policies
      - name: server-ingress
        namespace: default             # optional: selectors then mean this namespace, as in Cilium
        endpointSelector: {matchLabels: {app: server}}
        ingress:
          - fromEndpoints: [{matchLabels: {app: client}}]
            toPorts: [{ports: [{port: "9000", protocol: TCP}]}]

    apiVersion: cilium.io/v2            # or CiliumNetworkPolicy documents (---separated): metadata + spec(s)
    kind: CiliumNetworkPolicy
    metadata: {name: server-ingress, namespace: default}
    spec: {endpointSelector: ..., ingress: ...}

Rules take fromEndpoints/toEndpoints, fromCIDR/toCIDR, fromCIDRSet/toCIDRSet (cidr, except), fromEntities/
toEntities (all, world, cluster, host, remote-node) and toPorts (port, endPort, protocol TCP/UDP/SCTP/ICMP/
ICMPv6/ANY). Anything else is an error, never silently ignored: a policy that does less than it reads is worse
than one that does not load.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml

from flowscope.common.names import IPPROTO_ICMP, IPPROTO_ICMPV6, POLICY_PROTOCOLS
from flowscope.observer.policy.model import (
    ENTITIES,
    CIDRSet,
    IPNetwork,
    Policy,
    PortRule,
    Requirement,
    Rule,
    Selector,
)

MAX_PORT_RANGE = 1024  # ports one endPort range may span: each is a map entry per peer
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_CNP_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the place (policies[0].ingress[1]...) and why."""


def parse_policies(text: str, source: str = "") -> list[Policy]:
    """The policies in `text`; `source` (the file's name) is what a YAML syntax error names."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PolicyError(_yaml_error(exc, source)) from None
    policies: list[Policy] = []
    for number, doc in enumerate(documents):
        where = f"document {number + 1}" if len(documents) > 1 else ""
        policies += _document(doc, where)
    names = [p.name for p in policies]
    for name in names:
        if names.count(name) > 1:
            raise PolicyError(f"two policies are named {name!r}: names must be unique")
    return policies


def _yaml_error(exc: yaml.YAMLError, source: str) -> str:
    """`policy.yaml, line 3, column 7: not valid YAML: ...`: PyYAML's own text names `<unicode string>`, the
    text it was given, where a person needs the file and the line."""
    where = source or "the policy"
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f"{where}, line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}: not valid YAML: {problem}"


def _join(where: str, part: str) -> str:
    return f"{where}.{part}" if where and not part.startswith("[") else f"{where}{part}"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where or 'the file'}: expected a mapping, not {_kind(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _known(raw: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise PolicyError(f"{_join(where, str(key))}: unknown field (expected one of {', '.join(allowed)})")


def _document(doc: Any, where: str) -> list[Policy]:
    raw = _mapping(doc, where)
    if "kind" in raw:
        return _cilium(raw, where)
    _known(raw, ("policies",), where)
    items = _list(raw.get("policies"), _join(where, "policies"))
    return [
        _policy(_mapping(item, _join(where, f"policies[{i}]")), _join(where, f"policies[{i}]"))
        for i, item in enumerate(items)
    ]


def _cilium(raw: dict[str, Any], where: str) -> list[Policy]:
    _known(raw, ("apiVersion", "kind", "metadata", "spec", "specs"), where)
    if raw["kind"] not in _CNP_KINDS:
        raise PolicyError(f"{_join(where, 'kind')}: {raw['kind']!r} is not one of {', '.join(_CNP_KINDS)}")
    meta = _mapping(raw.get("metadata"), _join(where, "metadata"))
    namespace = meta.get("namespace", "default") if raw["kind"] == "CiliumNetworkPolicy" else None
    specs = [raw["spec"]] if "spec" in raw else _list(raw.get("specs"), _join(where, "specs"))
    out = []
    for i, spec in enumerate(specs):
        spec_where = _join(where, "spec" if "spec" in raw else f"specs[{i}]")
        body = dict(_mapping(spec, spec_where))
        body.pop("description", None)
        name = meta.get("name")
        body["name"] = name if len(specs) == 1 or not isinstance(name, str) else f"{name}-{i}"
        if namespace is not None:
            body["namespace"] = namespace
        out.append(_policy(body, spec_where))
    return out


def _policy(raw: dict[str, Any], where: str) -> Policy:
    _known(
        raw,
        ("name", "namespace", "description", "endpointSelector", "ingress", "ingressDeny", "egress", "egressDeny"),
        where,
    )
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PolicyError(f"{_join(where, 'name')}: a policy needs a name of letters, digits, '.', '_' and '-'")
    namespace = raw.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise PolicyError(f"{_join(where, 'namespace')}: expected a string, not {_kind(namespace)}")
    if "endpointSelector" not in raw:
        raise PolicyError(f"{where}: missing endpointSelector (use {{}} to select every endpoint)")
    sections = {}
    for section in ("ingress", "ingressDeny", "egress", "egressDeny"):
        items = _list(raw.get(section) or [], _join(where, section))
        spots = [_join(where, f"{section}[{i}]") for i in range(len(items))]
        sections[section] = tuple(
            _rule(_mapping(item, spot), spot, section) for item, spot in zip(items, spots, strict=True)
        )
    return Policy(
        name=name,
        subject=_selector(raw["endpointSelector"], _join(where, "endpointSelector")),
        namespace=namespace,
        ingress=sections["ingress"],
        ingress_deny=sections["ingressDeny"],
        egress=sections["egress"],
        egress_deny=sections["egressDeny"],
        document={key: value for key, value in raw.items() if key != "description"},
    )


def _rule(raw: dict[str, Any], where: str, section: str) -> Rule:
    side = "from" if section.startswith("ingress") else "to"
    fields = (*(f"{side}{kind}" for kind in ("Endpoints", "CIDR", "CIDRSet", "Entities")), "toPorts")
    _known(raw, fields, where)
    endpoints = tuple(
        _selector(s, _join(where, f"{side}Endpoints[{i}]"))
        for i, s in enumerate(_list(raw.get(f"{side}Endpoints", []), _join(where, f"{side}Endpoints")))
    )
    cidrs = [
        CIDRSet(_network(c, _join(where, f"{side}CIDR[{i}]")))
        for i, c in enumerate(_list(raw.get(f"{side}CIDR", []), _join(where, f"{side}CIDR")))
    ]
    for i, item in enumerate(_list(raw.get(f"{side}CIDRSet", []), _join(where, f"{side}CIDRSet"))):
        cidrs.append(
            _cidr_set(_mapping(item, _join(where, f"{side}CIDRSet[{i}]")), _join(where, f"{side}CIDRSet[{i}]"))
        )
    entities = []
    for i, entity in enumerate(_list(raw.get(f"{side}Entities", []), _join(where, f"{side}Entities"))):
        if entity not in ENTITIES:
            raise PolicyError(
                f"{_join(where, f'{side}Entities[{i}]')}: unknown entity {entity!r} (one of {', '.join(ENTITIES)})"
            )
        entities.append(entity)
    ports = []
    for i, item in enumerate(_list(raw.get("toPorts", []), _join(where, "toPorts"))):
        ports += _port_rules(_mapping(item, _join(where, f"toPorts[{i}]")), _join(where, f"toPorts[{i}]"))
    return Rule(endpoints=endpoints, cidrs=tuple(cidrs), entities=tuple(entities), ports=tuple(ports))


def _selector(raw: Any, where: str) -> Selector:
    raw = _mapping(raw, where)
    _known(raw, ("matchLabels", "matchExpressions"), where)
    labels = []
    for key, value in _mapping(raw.get("matchLabels") or {}, _join(where, "matchLabels")).items():
        if not isinstance(value, str | int | float | bool):
            raise PolicyError(f"{_join(where, f'matchLabels.{key}')}: expected a string, not {_kind(value)}")
        labels.append((_label_key(str(key)), str(value)))
    expressions = []
    for i, item in enumerate(_list(raw.get("matchExpressions") or [], _join(where, "matchExpressions"))):
        spot = _join(where, f"matchExpressions[{i}]")
        expr = _mapping(item, spot)
        _known(expr, ("key", "operator", "values"), spot)
        operator = expr.get("operator")
        if operator not in _OPERATORS:
            raise PolicyError(f"{_join(spot, 'operator')}: {operator!r} is not one of {', '.join(_OPERATORS)}")
        values = tuple(str(v) for v in _list(expr.get("values") or [], _join(spot, "values")))
        if operator in ("In", "NotIn") and not values:
            raise PolicyError(f"{_join(spot, 'values')}: {operator} needs at least one value")
        expressions.append(Requirement(_label_key(str(expr.get("key", ""))), operator, values))
    return Selector(tuple(sorted(labels)), tuple(expressions))


def _label_key(key: str) -> str:
    """`k8s:app` and `app` are the same label here (every label of ours comes from Kubernetes metadata)."""
    return key.removeprefix("k8s:")


def _network(value: Any, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _cidr_set(raw: dict[str, Any], where: str) -> CIDRSet:
    _known(raw, ("cidr", "except"), where)
    cidr = _network(raw.get("cidr"), _join(where, "cidr"))
    excepts = []
    for i, item in enumerate(_list(raw.get("except") or [], _join(where, "except"))):
        spot = _join(where, f"except[{i}]")
        net = _network(item, spot)
        if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
            raise PolicyError(f"{spot}: {net} is not inside {cidr}")
        excepts.append(net)
    return CIDRSet(cidr, tuple(excepts))


def _port_rules(raw: dict[str, Any], where: str) -> list[PortRule]:
    _known(raw, ("ports",), where)
    out = []
    for i, item in enumerate(_list(raw.get("ports") or [], _join(where, "ports"))):
        spot = _join(where, f"ports[{i}]")
        port = _mapping(item, spot)
        _known(port, ("port", "endPort", "protocol"), spot)
        proto_name = str(port.get("protocol", "ANY")).upper()
        if proto_name != "ANY" and proto_name not in POLICY_PROTOCOLS:
            known = "TCP, UDP, SCTP, ICMP, ICMPv6, ANY"
            raise PolicyError(f"{_join(spot, 'protocol')}: unknown protocol {port['protocol']!r} (one of {known})")
        proto = POLICY_PROTOCOLS.get(proto_name, 0)
        number = _port_number(port.get("port", 0), _join(spot, "port"))
        end = _port_number(port.get("endPort", 0), _join(spot, "endPort"))
        if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and (number or end):
            raise PolicyError(f"{spot}: {proto_name} has no ports; leave port out to allow the protocol")
        if end and (not number or end < number):
            raise PolicyError(f"{_join(spot, 'endPort')}: {end} needs a port at or below it")
        if end and end - number >= MAX_PORT_RANGE:
            raise PolicyError(
                f"{_join(spot, 'endPort')}: a range of at most {MAX_PORT_RANGE} ports, not {end - number + 1}"
            )
        out.append(PortRule(proto, number, end))
    return out


def _port_number(value: Any, where: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise PolicyError(f"{where}: a port is a number 0-65535 (named ports are not supported), not {value!r}")
    return int(text)
