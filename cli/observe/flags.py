"""The flags of `flowscope observe`, named and grouped as hubble's are.

Filter flags do not store values: each one is handed, in command-line order, to one FilterBuilder kept on the
parsed namespace, because order matters (`--not` applies to the flag after it) and because hubble's conflict
rules are checked as flags arrive. Their words are kept too, in the same order, so `flowscope top` can offer
the command line's filters as one line to edit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from flowscope.cli.observe.filters import FilterBuilder
from flowscope.cli.timefmt import TIME_FORMATS, time_format_name
from flowscope.common import names

OUTPUT_FORMATS = ("compact", "dict", "json", "jsonpb", "table")
FILTER_ATTRIBUTE = "flow_filter"
FILTER_WORDS_ATTRIBUTE = "filter_words"


def filter_builder(args: argparse.Namespace) -> FilterBuilder:
    """The builder the filter flags of this command line went to (an empty one when none was given)."""
    builder = getattr(args, FILTER_ATTRIBUTE, None)
    return builder if isinstance(builder, FilterBuilder) else FilterBuilder()


def filter_words(args: argparse.Namespace) -> list[str]:
    """The filter flags of this command line as they were given, in order (`--not --verdict DROPPED`)."""
    return list(getattr(args, FILTER_WORDS_ATTRIBUTE, None) or [])


class _FilterAction(argparse.Action):
    """Sends one filter flag to the namespace's FilterBuilder and keeps its words; a bad value becomes a usage
    error."""

    def __init__(self, option_strings: Sequence[str], dest: str, filter_name: str = "", **kwargs: Any) -> None:
        self.filter_name = filter_name
        super().__init__(option_strings, dest=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        builder = getattr(namespace, FILTER_ATTRIBUTE, None)
        if not isinstance(builder, FilterBuilder):
            builder = FilterBuilder()
            setattr(namespace, FILTER_ATTRIBUTE, builder)
        value = values if isinstance(values, str) else "true"
        try:
            builder.set(self.filter_name, value)
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        given = [values] if isinstance(values, str) else []  # a switch has no value word
        setattr(namespace, FILTER_WORDS_ATTRIBUTE, [*filter_words(namespace), f"--{self.filter_name}", *given])


def _filter(group: argparse._ArgumentGroup, *flags: str, help: str, switch: bool = False, **kwargs: Any) -> None:
    name = next(flag for flag in flags if flag.startswith("--"))[2:]
    if switch:
        kwargs["nargs"] = 0
    else:
        kwargs.setdefault("metavar", name.rsplit("-", 1)[-1].upper())
    group.add_argument(*flags, action=_FilterAction, filter_name=name, help=help, **kwargs)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _time_format(text: str) -> str:
    try:
        return time_format_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_selector_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("selectors")
    group.add_argument(
        "--last",
        type=_count,
        default=0,
        metavar="N",
        help="the last N flows of each node, so N times the nodes through a relay, as Hubble's (20 when nothing else)",
    )
    group.add_argument(
        "--first", type=_count, default=0, metavar="N", help="the first N flows still stored, of each node"
    )
    group.add_argument("--all", action="store_true", help="all flows still stored")
    group.add_argument("-f", "--follow", action="store_true", help="keep printing flows as they happen")
    group.add_argument(
        "--since", metavar="TIME", help="flows since TIME: 3s, 4m, 1h, or RFC3339 (2006-01-02T15:04:05Z)"
    )
    group.add_argument("--until", metavar="TIME", help="flows until TIME (same forms; ignored with --follow)")


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "filters",
        "A flow must match one value of every filter flag given. --X matches source or destination, "
        "--from-X the source, --to-X the destination. --not turns the next filter into an exclusion.",
    )
    _filter(group, "--not", switch=True, help="exclude flows matching the next filter (--not --from-ip 10.0.0.1)")
    for x, what in (
        ("ip", "IP address or CIDR"),
        ("pod", "pod name prefix, [namespace/]name"),
        ("namespace", "namespace"),
        ("label", "endpoint label, key=value or reserved:world"),
        ("identity", f"security identity, a number or one of {', '.join(names.RESERVED_IDENTITY_NUMBERS)}"),
        ("port", "L4 port"),
        ("fqdn", "fully qualified domain name pattern"),
        ("service", "service name prefix, [namespace/]name"),
        ("workload", "workload, [kind/]name"),
        ("cluster", "cluster name"),
    ):
        short = {"namespace": ["-n"], "label": ["-l"]}.get(x, [])
        _filter(group, *short, f"--{x}", help=f"{what}, at either end")
        _filter(group, f"--from-{x}", help=f"{what}, at the source")
        _filter(group, f"--to-{x}", help=f"{what}, at the destination")
    _filter(group, "-A", "--all-namespaces", switch=True, help="flows with a pod at either end, any namespace")
    _filter(group, "--from-all-namespaces", switch=True, help="flows from a pod in any namespace")
    _filter(group, "--to-all-namespaces", switch=True, help="flows to a pod in any namespace")
    _filter(group, "--protocol", help="L4/L7 protocol: tcp, udp, icmp, icmpv4, icmpv6, sctp, dns, http")
    _filter(group, "--verdict", help="FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED")
    types = ", ".join(names.EVENT_TYPES)
    trace_points = ", ".join(names.TRACE_POINT_NUMBERS)
    _filter(
        group,
        "-t",
        "--type",
        metavar="TYPE[:SUBTYPE]",
        help=f"event type ({types}); trace:{{{trace_points}}}",
    )
    _filter(group, "--tcp-flags", metavar="FLAGS", help="TCP flags, all of them set (syn,ack)")
    _filter(group, "--node-name", metavar="NAME", help="node name glob (node-*)")
    _filter(group, "--node-label", metavar="LABEL", help="node label (key=value)")
    _filter(group, "--ip-version", metavar="VERSION", help="v4, v6 or none")
    _filter(group, "-4", "--ipv4", switch=True, help="IPv4 flows only")
    _filter(group, "-6", "--ipv6", switch=True, help="IPv6 flows only")
    _filter(group, "--traffic-direction", metavar="DIRECTION", help="ingress or egress")
    _filter(group, "--interface", metavar="NAME", help="network interface the flow was seen on (eth0)")
    _filter(group, "--drop-reason-desc", metavar="REASON", help="Cilium drop reason (POLICY_DENIED, ...)")
    _filter(
        group,
        "--reply",
        nargs="?",
        const="true",
        metavar="BOOL",
        help="replies only (--reply false: requests)",
    )
    _filter(group, "--uuid", help="the flow with this unique identifier")
    _filter(group, "--snat-ip", metavar="IP", help="source address after SNAT, address or CIDR")
    _filter(group, "--encrypted", switch=True, help="encrypted flows only")
    _filter(group, "--unencrypted", switch=True, help="unencrypted flows only")
    _filter(group, "--http-status", metavar="CODE", help="HTTP status code or prefix (404, 5+)")
    _filter(group, "--http-method", metavar="METHOD", help="HTTP method (get, post)")
    _filter(group, "--http-path", metavar="REGEX", help="HTTP path regular expression")
    _filter(group, "--http-url", metavar="REGEX", help="HTTP URL regular expression")
    _filter(group, "--http-header", metavar="KEY:VALUE", help="HTTP header")
    _filter(group, "--dns-query", metavar="REGEX", help="DNS query name regular expression")
    _filter(group, "--trace-id", metavar="ID", help="trace ID")
    _filter(group, "--ip-trace-id", metavar="ID", help="IP trace ID")
    _filter(group, "--cel-expression", metavar="EXPR", help="CEL expression over the flow")
    raw = parser.add_argument_group("raw filters")
    raw.add_argument("--allowlist", action="append", default=[], metavar="JSON", help="FlowFilter(s) as JSON, ORed")
    raw.add_argument("--denylist", action="append", default=[], metavar="JSON", help="FlowFilter(s) as JSON, excluded")
    raw.add_argument("--print-raw-filters", action="store_true", help="print the filters as YAML and exit")


def add_format_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", default="compact", choices=[*OUTPUT_FORMATS, "tab"], help="output format")
    group.add_argument("--print-node-name", action="store_true", help="print the node each flow was seen on")
    group.add_argument(
        "--print-policy-names", action="store_true", help="print the policies that allowed or denied a flow"
    )
    group.add_argument(
        "--time-format",
        type=_time_format,
        default="StampMilli",
        metavar="FORMAT",
        help=", ".join(TIME_FORMATS),
    )
    group.add_argument("--color", default="auto", choices=("auto", "always", "never"), help="colour (auto: on a tty)")
    group.add_argument(
        "--ip-translation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show pod, service and DNS names instead of addresses",
    )
    group.add_argument("--numeric", action="store_true", help="addresses as numbers (same as --no-ip-translation)")
    group.add_argument(
        "--field-mask",
        action="append",
        default=[],
        metavar="PATHS",
        help="Flow fields to request (json output)",
    )
    group.add_argument(
        "--use-default-field-masks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for text output, ask only for the fields it prints",
    )
    group.add_argument("--debug", action="store_true", help="also print informational node status events")
