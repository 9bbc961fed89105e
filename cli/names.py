"""The words Hubble and Cilium use for numbers on the wire: event types, trace points, drop reasons, reserved
identities, ICMP types. Filters read them (`--type trace:to-endpoint`), printers write them, so both agree."""

from __future__ import annotations

# Cilium monitor message types (flow.event_type.type, EventTypeFilter.type).
EVENT_TYPES: dict[str, int] = {
    "drop": 1,
    "debug": 2,
    "capture": 3,
    "trace": 4,
    "policy-verdict": 5,
    "trace-sock": 14,
    "l7": 129,
    "agent": 130,
}
DROP, TRACE, POLICY_VERDICT = EVENT_TYPES["drop"], EVENT_TYPES["trace"], EVENT_TYPES["policy-verdict"]

# Cilium's enum trace_point (flow.event_type.sub_type of trace events).
TRACE_POINTS: dict[int, str] = {
    0: "to-endpoint",
    1: "to-proxy",
    2: "to-host",
    3: "to-stack",
    4: "to-overlay",
    5: "from-endpoint",
    6: "from-proxy",
    7: "from-host",
    8: "from-stack",
    9: "from-overlay",
    10: "from-network",
    11: "to-network",
    12: "from-crypto",
    13: "to-crypto",
}
TRACE_POINT_NUMBERS = {name: number for number, name in TRACE_POINTS.items()}

# Cilium's agent notification sub-types, for `--type agent:...`.
AGENT_EVENT_SUBTYPES: dict[str, int] = {
    "unspecified": 0,
    "message": 1,
    "agent-started": 2,
    "policy-updated": 3,
    "policy-deleted": 4,
    "endpoint-regenerate-success": 5,
    "endpoint-regenerate-failure": 6,
    "endpoint-created": 7,
    "endpoint-deleted": 8,
    "ipcache-upserted": 9,
    "ipcache-deleted": 10,
}

# The text hubble prints for a Cilium drop code (flow.event_type.sub_type of drop events).
DROP_REASON_TEXT: dict[int, str] = {
    0: "Success",
    2: "Invalid packet",
    130: "Invalid source mac",
    131: "Invalid destination mac",
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    136: "CT: Missing TCP ACK flag",
    137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol",
    140: "Missed tail call",
    141: "Error writing to packet",
    142: "Unknown L4 protocol",
    143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code",
    146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key",
    148: "Error retrieving tunnel options",
    149: "Invalid Geneve option",
    150: "Unknown L3 target address",
    151: "Stale or unroutable IP",
    152: "No matching local container found",
    153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum",
    155: "CT: Map insertion failed",
    156: "Invalid IPv6 extension header",
    157: "IP fragmentation not supported",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "Failed to insert into proxymap",
    162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state",
    164: "Local host is unreachable",
    165: "No configuration available to perform policy decision",
    166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade",
    168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited",
    171: "Invalid identity",
    172: "Unknown sender",
    173: "NAT not needed",
    174: "Is a ClusterIP",
    175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check",
    178: "Socket lookup failed",
    179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter",
    183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer",
    185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
    189: "Authentication required",
    190: "No conntrack map found",
    191: "No nat map found",
    192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation",
    194: "No egress gateway found",
    195: "Traffic is unencrypted",
    196: "TTL exceeded",
    197: "No node ID found",
    198: "Rate limited",
    199: "IGMP handled",
    200: "IGMP subscribed",
    201: "Multicast handled",
    202: "Host datapath not ready",
    203: "Endpoint policy program not available",
    204: "No Egress IP configured",
    205: "Punt to proxy",
}

POLICY_MATCH_TYPES: dict[int, str] = {0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all"}

# Cilium's reserved security identities: printed as `(world)`, accepted by --identity by name.
RESERVED_IDENTITIES: dict[int, str] = {
    0: "unknown",
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
}
RESERVED_IDENTITY_NUMBERS = {name: number for number, name in RESERVED_IDENTITIES.items() if number}

# ICMP type (and code) names as gopacket spells them in hubble's summaries.
ICMPV4_TYPES: dict[int, str] = {
    0: "EchoReply",
    3: "DestinationUnreachable",
    4: "SourceQuench",
    5: "Redirect",
    8: "EchoRequest",
    9: "RouterAdvertisement",
    10: "RouterSolicitation",
    11: "TimeExceeded",
    12: "ParameterProblem",
    13: "TimestampRequest",
    14: "TimestampReply",
    15: "InfoRequest",
    16: "InfoReply",
    17: "AddressMaskRequest",
    18: "AddressMaskReply",
}
ICMPV4_CODES: dict[int, dict[int, str]] = {
    3: {
        0: "Net",
        1: "Host",
        2: "Protocol",
        3: "Port",
        4: "FragmentationNeeded",
        5: "SourceRoutingFailed",
        6: "NetUnknown",
        7: "HostUnknown",
        8: "SourceIsolated",
        9: "NetAdminProhibited",
        10: "HostAdminProhibited",
        11: "NetTOS",
        12: "HostTOS",
        13: "CommAdminProhibited",
        14: "HostPrecedence",
        15: "PrecedenceCutoff",
    },
    5: {0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"},
    11: {0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"},
    12: {0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"},
}
ICMPV6_TYPES: dict[int, str] = {
    1: "DestinationUnreachable",
    2: "PacketTooBig",
    3: "TimeExceeded",
    4: "ParameterProblem",
    128: "EchoRequest",
    129: "EchoReply",
    133: "RouterSolicitation",
    134: "RouterAdvertisement",
    135: "NeighborSolicitation",
    136: "NeighborAdvertisement",
    137: "Redirect",
}
ICMPV6_CODES: dict[int, dict[int, str]] = {
    1: {
        0: "NoRouteToDst",
        1: "AdminProhibited",
        2: "BeyondScopeOfSrc",
        3: "AddressUnreachable",
        4: "PortUnreachable",
        5: "SrcAddressFailedPolicy",
        6: "RejectRouteToDst",
    },
    3: {0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"},
    4: {0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"},
}


def icmp_type_code(kind: int, code: int, types: dict[int, str], codes: dict[int, dict[int, str]]) -> str:
    """gopacket's words, as the agent's summaries use: `EchoRequest`, `DestinationUnreachable(Port)`,
    `EchoRequest(Code: 3)`, or `200(0)` for a type it does not know."""
    name = types.get(kind)
    if name is None:
        return f"{kind}({code})"
    code_name = codes.get(kind, {}).get(code)
    if code_name:
        return f"{name}({code_name})"
    return name if code == 0 and kind not in codes else f"{name}(Code: {code})"
