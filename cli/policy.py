"""`flowscope policy apply|show|check`: the network policy an agent enforces.

    flowscope policy apply policy.yaml         # parse, compile, enforce (all or nothing)
    flowscope policy show [-o text|yaml|json]  # what is in force, and what it compiled to
    flowscope policy check client server --port 9000 [--protocol tcp]
                                               # would it pass, and by which rule (exit 0 allowed, 3 denied)

Pods are named `namespace/pod` (or just `pod` when that is unique); addresses work too. The agent answers
`check` with the datapath's own lookups, so the answer is what the packets would meet. A policy belongs to one
node's agent: point --server at each node's agent (a relay does not serve it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from google.protobuf import json_format

from flowscope.api.control import control_pb2
from flowscope.cli.config import control_call
from flowscope.cli.connection import add_server_flags
from flowscope.cli.errors import CliError
from flowscope.cli.printer.tabwriter import align
from flowscope.common.names import DROP_POLICY_DENIED, DROP_POLICY_DENY

DENIED_EXIT = 3
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
PROTOCOL_NAMES = {number: name.upper() if name != "icmpv6" else "ICMPv6" for name, number in PROTOCOLS.items()}
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
    apply.add_argument("file", type=Path)
    add_server_flags(apply)
    apply.set_defaults(run=run_apply)
    show = commands.add_parser("show", help="the policy in force", allow_abbrev=False)
    show.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text")
    add_server_flags(show)
    show.set_defaults(run=run_show)
    check = commands.add_parser("check", help="would a connection pass, and by which rule", allow_abbrev=False)
    check.add_argument("source", help="pod (namespace/pod) or address")
    check.add_argument("destination", help="pod (namespace/pod) or address")
    check.add_argument("--port", type=int, default=0, help="destination port")
    check.add_argument("--protocol", type=_protocol, default=6, help="tcp, udp, sctp, icmp, icmpv6 or a number (tcp)")
    add_server_flags(check)
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
    status = control_call(args, lambda stub, t: stub.ApplyPolicy(request, timeout=t))
    print(
        f"policy revision {status.revision} in force: {len(status.policies)} policies, "
        f"{len(status.enforced)} endpoint identities enforced, {len(status.entries)} map entries"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    status = control_call(args, lambda stub, t: stub.GetPolicy(control_pb2.GetPolicyRequest(), timeout=t))
    if args.output == "yaml":
        sys.stdout.write(status.yaml)
    elif args.output == "json":
        print(json.dumps(json_format.MessageToDict(status, preserving_proto_field_name=True), indent=2))
    else:
        print(format_status(status))
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
    name = PROTOCOL_NAMES.get(proto, str(proto))
    return f"{port}/{name}" if port else f"any/{name}"


def run_check(args: argparse.Namespace) -> int:
    request = control_pb2.CheckPolicyRequest(
        source=args.source, destination=args.destination, protocol=args.protocol, port=args.port
    )
    answer = control_call(args, lambda stub, t: stub.CheckPolicy(request, timeout=t))
    print(format_check(answer, args.protocol, args.port))
    return 0 if answer.allowed else DENIED_EXIT


def format_check(answer: control_pb2.CheckPolicyResponse, protocol: int, port: int) -> str:
    verdict = "ALLOWED" if answer.allowed else "DENIED"
    headline = (
        f"{verdict}: {answer.source} ({answer.source_ip}) -> {answer.destination} ({answer.destination_ip}) "
        f"{_port(protocol, port)}, policy revision {answer.revision}"
    )
    return "\n".join([headline, _side("egress", answer.egress), _side("ingress", answer.ingress)])


def _side(direction: str, verdict: control_pb2.Verdict) -> str:
    who = f"  {direction} of {verdict.subject}:"
    if not verdict.enforced:
        return f"{who} not enforced (no policy selects it in this direction)"
    if verdict.allowed:
        return f"{who} allowed by {verdict.rule} ({verdict.match_type})"
    reason = DROP_REASONS.get(verdict.drop_reason, str(verdict.drop_reason))
    by = f" by {verdict.rule}" if verdict.rule else " (no rule allows it)"
    return f"{who} denied{by}: {reason}"
