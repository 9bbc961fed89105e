"""`flowscope policy apply|delete|show|check`: the network policy the agents enforce.

    flowscope policy apply policy.yaml         # parse, compile, enforce (all or nothing)
    flowscope policy delete [NAME ...]         # stop enforcing the named policies, or all of them
    flowscope policy show [-o text|yaml|json]  # what is in force, and what it compiled to
    flowscope policy check client server --port 9000 [--protocol tcp]
                                               # would it pass, and by which rule
                                               # (exit 0 allowed, 3 denied, 4 not known: a node was not asked)

Pods are named `namespace/pod` (or just `pod` when that is unique); addresses work too. The agent answers
`check` with the datapath's own lookups, so the answer is what the packets would meet.

Each node's agent enforces its own copy of the policy (a relay does not serve it). With no --server, a lab that
is up (the lab named `lab`, or --lab NAME) has every one of its agents told, so one command applies the policy
to the whole lab; `check` then takes the source's egress verdict from the source's node and the destination's
ingress verdict from the destination's node. --server asks one agent, and `check` says which side it cannot
answer for because the endpoint lives on another node.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format

from flowscope.api.control import control_pb2
from flowscope.cli.agent_calls import add_agent_target_flags, by_node, control_calls
from flowscope.cli.errors import CliError
from flowscope.cli.printer.tabwriter import align
from flowscope.common.names import DROP_POLICY_DENIED, DROP_POLICY_DENY, POLICY_PROTOCOL_NAMES, POLICY_PROTOCOLS

DENIED_EXIT = 3
UNKNOWN_EXIT = 4
PROTOCOLS = {name.lower(): number for name, number in POLICY_PROTOCOLS.items()}
DROP_REASONS = {DROP_POLICY_DENIED: "POLICY_DENIED", DROP_POLICY_DENY: "POLICY_DENY"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="apply, show and check the network policy an agent enforces",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    apply = commands.add_parser("apply", help="enforce a policy file (YAML)", allow_abbrev=False)
    apply.add_argument(
        "file", type=Path, help="the policy: flowscope's `policies:` list or CiliumNetworkPolicy documents"
    )
    add_agent_target_flags(apply)
    apply.set_defaults(run=run_apply)
    delete = commands.add_parser("delete", help="stop enforcing policies", allow_abbrev=False)
    delete.add_argument("names", nargs="*", metavar="NAME", help="the policies to remove (default: all)")
    add_agent_target_flags(delete)
    delete.set_defaults(run=run_delete)
    show = commands.add_parser("show", help="the policy in force", allow_abbrev=False)
    show.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text")
    add_agent_target_flags(show)
    show.set_defaults(run=run_show)
    check = commands.add_parser("check", help="would a connection pass, and by which rule", allow_abbrev=False)
    check.add_argument("source", help="pod (namespace/pod) or address")
    check.add_argument("destination", help="pod (namespace/pod) or address")
    check.add_argument("--port", type=int, default=0, help="destination port")
    check.add_argument("--protocol", type=_protocol, default=6, help="tcp, udp, sctp, icmp, icmpv6 or a number (tcp)")
    add_agent_target_flags(check)
    check.set_defaults(run=run_check)


def _protocol(text: str) -> int:
    value = text.strip().lower()
    if value in PROTOCOLS:
        return PROTOCOLS[value]
    if value.isdigit() and int(value) < 256:
        return int(value)
    raise argparse.ArgumentTypeError(f"unknown protocol {text!r}: {', '.join(PROTOCOLS)} or a number")


def run_apply(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    request = control_pb2.ApplyPolicyRequest(yaml=text, source=str(args.file))
    report(control_calls(args, lambda stub, t: stub.ApplyPolicy(request, timeout=t)))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    request = control_pb2.DeletePolicyRequest(names=args.names)
    report(control_calls(args, lambda stub, t: stub.DeletePolicy(request, timeout=t)))
    return 0


def report(answers: dict[str, control_pb2.PolicyStatus]) -> None:
    """What each agent now enforces, and a warning (once) for every policy that selects no pod."""
    several = len(answers) > 1
    for node, status in answers.items():
        print(
            by_node(
                node,
                several,
                f"policy revision {status.revision} in force: {len(status.policies)} policies, "
                f"{len(status.enforced)} endpoint identities enforced, {len(status.entries)} map entries",
            )
        )
    for name in sorted({name for status in answers.values() for name in status.unselected}):
        print(f"warning: policy {name!r} selects no pod: its endpointSelector matches no labels", file=sys.stderr)


def run_show(args: argparse.Namespace) -> int:
    answers = control_calls(args, lambda stub, t: stub.GetPolicy(control_pb2.GetPolicyRequest(), timeout=t))
    several = len(answers) > 1
    if args.output == "json":
        found = {node: json_format.MessageToDict(s, preserving_proto_field_name=True) for node, s in answers.items()}
        print(json.dumps(found if several else next(iter(found.values())), indent=2))
        return 0
    for number, (node, status) in enumerate(answers.items()):
        if args.output == "yaml":
            sys.stdout.write(f"# {node}\n{status.yaml}" if several else status.yaml)
        else:
            print(("\n" if number else "") + (f"Node: {node}\n" if several else "") + format_status(status))
    return 0


def format_status(status: control_pb2.PolicyStatus) -> str:
    if not status.revision:
        return "no policy applied"
    lines = [
        f"Revision: {status.revision} (from {status.source or 'an unnamed source'})",
        f"Policies: {', '.join(status.policies) or 'none'}",
        "Enforced: "
        + (
            "; ".join(
                f"{s.subject} ({'+'.join(d for d, on in (('ingress', s.ingress), ('egress', s.egress)) if on)})"
                for s in status.enforced
            )
            or "nothing"
        ),
    ]
    for cidr in status.cidr_identities:
        lines.append(f"CIDR identity: {cidr.cidr} -> {cidr.identity}")
    if status.entries:
        rows = [["SUBJECT", "DIRECTION", "PEER", "PORT", "ACTION", "RULE"]]
        for e in status.entries:
            direction = control_pb2.Direction.Name(e.direction).lower()
            port = _port(e.protocol, e.port)
            rows.append([e.subject, direction, e.peer, port, "deny" if e.deny else "allow", e.rule])
        lines += ["", *align(rows)]
    return "\n".join(lines)


def _port(proto: int, port: int) -> str:
    if not proto:
        return "any"
    name = POLICY_PROTOCOL_NAMES.get(proto, str(proto))
    return f"{port}/{name}" if port else f"any/{name}"


def run_check(args: argparse.Namespace) -> int:
    request = control_pb2.CheckPolicyRequest(
        source=args.source, destination=args.destination, protocol=args.protocol, port=args.port
    )
    answers = control_calls(args, lambda stub, t: stub.CheckPolicy(request, timeout=t))
    answer, unasked = combine(answers)
    print(format_check(answer, args.protocol, args.port, unasked))
    if not answer.allowed:
        return DENIED_EXIT
    return UNKNOWN_EXIT if unasked else 0


def combine(answers: dict[str, control_pb2.CheckPolicyResponse]) -> tuple[control_pb2.CheckPolicyResponse, set[str]]:
    """One answer from the agents asked: the egress verdict of the source's node and the ingress verdict of the
    destination's node (any agent's for an address outside the cluster, which no node enforces a policy for),
    and the directions whose node was not asked."""
    by_agent = {answer.node or node: answer for node, answer in answers.items()}
    first = next(iter(by_agent.values()))
    combined = control_pb2.CheckPolicyResponse()
    combined.CopyFrom(first)
    unasked: set[str] = set()
    for direction, host in (("egress", first.source_node), ("ingress", first.destination_node)):
        if not host:
            continue
        if host in by_agent:
            getattr(combined, direction).CopyFrom(getattr(by_agent[host], direction))
        else:
            unasked.add(direction)
    known = [getattr(combined, direction).allowed for direction in ("egress", "ingress") if direction not in unasked]
    combined.allowed = all(known)
    if first.destination_node in by_agent:
        combined.revision = by_agent[first.destination_node].revision
    return combined, unasked


def format_check(
    answer: control_pb2.CheckPolicyResponse, protocol: int, port: int, unasked: set[str] | None = None
) -> str:
    unasked = unasked or set()
    verdict = "DENIED" if not answer.allowed else "NOT KNOWN" if unasked else "ALLOWED"
    headline = (
        f"{verdict}: {answer.source} ({answer.source_ip}) -> {answer.destination} ({answer.destination_ip}) "
        f"{_port(protocol, port)}, policy revision {answer.revision}"
    )
    sides = []
    for direction, host in (("egress", answer.source_node), ("ingress", answer.destination_node)):
        verdict_of = getattr(answer, direction)
        if direction in unasked:
            sides.append(
                f"  {direction} of {verdict_of.subject}: not known: it lives on {host}, whose agent enforces it "
                f"(ask that agent with --server, or every agent of a lab with --lab)"
            )
        else:
            sides.append(_side(direction, verdict_of))
    return "\n".join([headline, *sides])


def _side(direction: str, verdict: control_pb2.Verdict) -> str:
    who = f"  {direction} of {verdict.subject}:"
    if not verdict.enforced:
        return f"{who} not enforced (no policy selects it in this direction)"
    if verdict.allowed:
        return f"{who} allowed by {verdict.rule} ({verdict.match_type})"
    reason = DROP_REASONS.get(verdict.drop_reason, str(verdict.drop_reason))
    by = f" by {verdict.rule}" if verdict.rule else " (no rule allows it)"
    return f"{who} denied{by}: {reason}"
