"""From parsed flags to the GetFlowsRequest hubble sends for them (cmd/observe/flows.go getFlowsRequest)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.errors import UsageError
from flowscope.cli.observe.flags import filter_builder
from flowscope.cli.timefmt import parse_time, to_timestamp

DEFAULT_LAST = 20
ALL_FLOWS = 2**64 - 1
Selectable = observer_pb2.GetFlowsRequest | observer_pb2.GetAgentEventsRequest | observer_pb2.GetDebugEventsRequest

# The mask hubble's CLI (v1.19) sends for its text formats when no mask is given, as it sends it (its 20 paths,
# in its order: docs/reference/hubble-api.md; flowscope never fills ip_trace_id, which it carries for the wire) ...
HUBBLE_FIELD_MASK = (
    "time",
    "verdict",
    "ethernet",
    "IP",
    "l4",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "Type",
    "node_name",
    "l7",
    "event_type",
    "source_service",
    "destination_service",
    "is_reply",
    "Summary",
    "ip_trace_id",
)
# ... and what flowscope's text formats print beyond that: the policy-verdict match and direction, the drop
# reason enum, flowscope's own block (kernel drop reason, aggregated packet and byte counts), and the policies
# behind a policy verdict (--print-policy-names; empty in every other flow, so they cost nothing when unasked),
# and the DNS names the agent attached to the flow's addresses, which name an end that is no pod or service
# (hubble's printer would show them too; its CLI's mask leaves them out).
POLICY_FIELDS = ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by")
FIELD_MASK = (
    *HUBBLE_FIELD_MASK,
    "source_names",
    "destination_names",
    "policy_match_type",
    "traffic_direction",
    "drop_reason_desc",
    "flowscope",
    *POLICY_FIELDS,
)


def build_request(
    args: argparse.Namespace, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> observer_pb2.GetFlowsRequest:
    """The request for these flags; UsageError for combinations hubble refuses."""
    request = observer_pb2.GetFlowsRequest()
    select(request, args, now)

    try:
        whitelist, blacklist = filter_builder(args).build()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    request.whitelist.extend([*whitelist, *parse_raw_filters("allowlist", args.allowlist)])
    request.blacklist.extend([*blacklist, *parse_raw_filters("denylist", args.denylist)])

    paths = field_mask_paths(args)
    if paths:
        request.field_mask.CopyFrom(_field_mask(paths))
    return request


def select(request: Selectable, args: argparse.Namespace, now: Callable[[], datetime]) -> None:
    """Set the selectors (number, first, follow, since, until) GetFlows, GetAgentEvents and GetDebugEvents share;
    UsageError for combinations hubble refuses."""
    first, last = args.first > 0, args.last > 0
    for given, other, message in (
        (first, last, "cannot set both --first and --last"),
        (first, args.all, "cannot set both --first and --all"),
        (first, args.follow, "cannot set both --first and --follow"),
        (last, args.all, "cannot set both --last and --all"),
    ):
        if given and other:
            raise UsageError(message)
    request.follow, request.first = args.follow, first
    if args.since:
        request.since.CopyFrom(to_timestamp(_moment("since", args.since, now)))
    if args.until and not args.follow:
        request.until.CopyFrom(to_timestamp(_moment("until", args.until, now)))

    number = args.first if first else args.last
    if not (request.HasField("since") or request.HasField("until") or first):
        if args.all:
            number = ALL_FLOWS
        elif number == 0 and not args.follow:
            number = DEFAULT_LAST
    request.number = number


def _moment(flag: str, text: str, now: Callable[[], datetime]) -> datetime:
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise UsageError(f"failed to parse the {flag} time: {exc}") from None


def field_mask_paths(args: argparse.Namespace) -> list[str]:
    """The mask to send: the user's (JSON output only, as in hubble), or the default one for text output."""
    custom = [path.strip() for text in args.field_mask for path in text.split(",") if path.strip()]
    text_output = args.output not in ("json", "jsonpb")
    if custom and text_output:
        raise UsageError(f"{args.output} output format is not compatible with custom field mask")
    if text_output and args.use_default_field_masks:
        return list(FIELD_MASK)
    return custom


def _field_mask(paths: list[str]) -> FieldMask:
    flow: Any = flow_pb2.Flow.DESCRIPTOR
    mask = FieldMask(paths=paths)
    if not mask.IsValidForDescriptor(flow):
        invalid = [path for path in paths if not FieldMask(paths=[path]).IsValidForDescriptor(flow)]
        raise UsageError(f"failed to construct field mask: invalid Flow field(s): {', '.join(invalid)}")
    return mask


def parse_raw_filters(flag: str, texts: list[str]) -> list[flow_pb2.FlowFilter]:
    """FlowFilters written as JSON (proto or JSON field names); one flag value may hold several objects."""
    decoder = json.JSONDecoder()
    filters: list[flow_pb2.FlowFilter] = []
    for text in texts:
        position = 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            try:
                value, position = decoder.raw_decode(text, position)
                filters.append(json_format.ParseDict(value, flow_pb2.FlowFilter()))
            except (ValueError, json_format.ParseError) as exc:
                raise UsageError(f"invalid --{flag} flag: failed to decode '{text}': {exc}") from None
    return filters


def raw_filters_yaml(request: observer_pb2.GetFlowsRequest) -> str:
    """The request's filters as the YAML hubble's --print-raw-filters writes (usable again as --allowlist)."""
    lines: list[str] = []
    for key, filters in (("allowlist", request.whitelist), ("denylist", request.blacklist)):
        if not filters:
            continue
        lines.append(f"{key}:")
        for filter_ in filters:
            as_json = json.dumps(
                json_format.MessageToDict(filter_, preserving_proto_field_name=True), separators=(",", ":")
            )
            lines.append("    - '" + as_json.replace("'", "''") + "'")
    return "".join(line + "\n" for line in lines) or "{}\n"
