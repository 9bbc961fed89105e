"""Reading the values of filter flags: identities, event types, TCP flags, verdicts... with hubble's error
wording, so a mistyped value is reported as clearly as hubble reports it."""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.common.filter_values import network, port_number, protocol_name


def parse_identity(value: str) -> int:
    if value in names.RESERVED_IDENTITY_NUMBERS:
        return names.RESERVED_IDENTITY_NUMBERS[value]
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < 2**32:
        reserved = ", ".join(names.RESERVED_IDENTITY_NUMBERS)
        raise ValueError(f"invalid security identity {value!r}, expected one of [{reserved}] or a numeric value")
    return number


def parse_workload(value: str) -> flow_pb2.Workload:
    kind, slash, name = value.partition("/")
    return flow_pb2.Workload(kind=kind, name=name) if slash else flow_pb2.Workload(name=value)


def parse_event_type(value: str) -> flow_pb2.EventTypeFilter:
    """`trace`, `trace:to-endpoint`, `drop`, `policy-verdict`, `agent:policy-updated`, or numbers."""
    type_name, colon, sub_name = value.partition(":")
    kind = names.EVENT_TYPES.get(type_name)
    if kind is None:
        if not type_name.isdigit():
            known = ", ".join(names.EVENT_TYPES)
            raise ValueError(f"unknown event type {type_name!r} (one of {known}, or a number)")
        kind = int(type_name)
    result = flow_pb2.EventTypeFilter(type=kind)
    if colon:
        if kind == names.EVENT_TRACE and sub_name in names.TRACE_POINT_NUMBERS:
            sub_type = names.TRACE_POINT_NUMBERS[sub_name]
        elif kind == names.EVENT_TYPES["agent"] and sub_name in names.AGENT_EVENT_SUBTYPES:
            sub_type = names.AGENT_EVENT_SUBTYPES[sub_name]
        elif sub_name.isdigit():
            sub_type = int(sub_name)
        else:
            hint = f" (trace points: {', '.join(names.TRACE_POINT_NUMBERS)})" if kind == names.EVENT_TRACE else ""
            raise ValueError(f"unknown event sub-type {sub_name!r}{hint}")
        result.match_sub_type = True
        result.sub_type = sub_type
    return result


def parse_tcp_flags(value: str) -> flow_pb2.TCPFlags:
    flags = flow_pb2.TCPFlags()
    for name in value.split(","):
        if name.upper() not in flow_pb2.TCPFlags.DESCRIPTOR.fields_by_name:
            raise ValueError(f"unknown tcp flag: {name}")
        setattr(flags, name.upper(), True)
    return flags


def parse_ip_version(value: str) -> int:
    lowered = value.lower()
    if lowered in ("4", "v4", "ipv4", "ip4"):
        return flow_pb2.IPv4
    if lowered in ("6", "v6", "ipv6", "ip6"):
        return flow_pb2.IPv6
    if lowered in ("none", "0"):
        return flow_pb2.IP_NOT_USED
    raise ValueError(f"invalid IP version {value!r}, expected v4, v6 or none")


def parse_protocol(value: str) -> str:
    """Checked here, where it is typed, by the rule the server applies (common/filter_values.py)."""
    protocol_name(value)
    return value


def parse_ip(value: str) -> str:
    """An address or a CIDR, IPv4 or IPv6, sent as typed (the server reads the text)."""
    network(value)
    return value


def parse_port(value: str) -> str:
    """A port number, sent as typed; the message names no end, since --port matches either."""
    port_number(value)
    return value


def parse_traffic_direction(value: str) -> int:
    lowered = value.lower()
    if lowered == "ingress":
        return flow_pb2.INGRESS
    if lowered == "egress":
        return flow_pb2.EGRESS
    raise ValueError(f"{lowered}: invalid traffic direction, expected ingress or egress")


def parse_verdict(value: str) -> int:
    if value.upper() not in flow_pb2.Verdict.DESCRIPTOR.values_by_name or value.upper() == "VERDICT_UNKNOWN":
        raise ValueError(f"invalid --verdict value: {value}")
    return flow_pb2.Verdict.Value(value.upper())


def parse_drop_reason(value: str) -> int:
    if not value:
        raise ValueError("empty --drop-reason-desc value")
    if value.upper() not in flow_pb2.DropReason.DESCRIPTOR.values_by_name:
        raise ValueError(f"invalid --drop-reason-desc value: {value} (Cilium drop reasons such as POLICY_DENIED)")
    return flow_pb2.DropReason.Value(value.upper())


def parse_http_header(value: str) -> flow_pb2.HTTPHeader:
    key, colon, header_value = value.partition(":")
    if not colon:
        raise ValueError(f"invalid http-header value {value!r}, expected name:value")
    return flow_pb2.HTTPHeader(key=key, value=header_value)


def parse_ip_trace_id(value: str) -> int:
    if value == "0":
        raise ValueError("invalid --ip-trace-id value; must be greater than 0")
    if not value.isdigit() or int(value) >= 2**64:
        raise ValueError(f"invalid --ip-trace-id value: {value}")
    return int(value)


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "t", "1", "yes"):
        return True
    if lowered in ("false", "f", "0", "no"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")
