"""The numbers the datapath writes and the wire carries, and the words Hubble and Cilium use for them.

Event types, trace observation points, verdicts, lost-event sources, drop reasons, policy match types and
reserved identities: the datapath writes them into each event (bpf/include/flowscope/event.h, drop.h, policy.h
and maps.h number them, and stay the source of truth), the agent decodes and filters them, the relay passes them
on, and the CLI reads them from flags (`--type trace:to-endpoint`) and prints them. One home, so all of them agree;
tests/common/test_common_names.py checks every number against the C headers and the protobuf enums. It imports
nothing, so the CLI loads it for free.
"""

from __future__ import annotations

# Event types: Cilium's monitor message types (fs_event.type, flow.event_type.type, EventTypeFilter.type).
EVENT_DROP = 1
EVENT_DEBUG = 2  # a datapath debug event: never a flow, routed to GetDebugEvents (observer/debug_events.py)
EVENT_TRACE = 4
EVENT_POLICY_VERDICT = 5
EVENT_L7 = 129  # Cilium's access-log type: an L7 flow, its message in the agent's L7 store (observer/l7/store.py)
EVENT_LOST = 255  # made by the agent, never by the kernel or sent as a flow: a LostEvent kept in the flow ring

EVENT_TYPES: dict[str, int] = {
    "drop": EVENT_DROP,
    "debug": EVENT_DEBUG,
    "capture": 3,
    "trace": EVENT_TRACE,
    "policy-verdict": EVENT_POLICY_VERDICT,
    "trace-sock": 14,
    "l7": EVENT_L7,
    "agent": 130,
}

# Trace observation points: Cilium's enum trace_point (the sub-type of a trace event).
TRACE_TO_LXC = 0
TRACE_TO_PROXY = 1
TRACE_TO_HOST = 2
TRACE_TO_STACK = 3
TRACE_TO_OVERLAY = 4
TRACE_FROM_LXC = 5
TRACE_FROM_PROXY = 6
TRACE_FROM_HOST = 7
TRACE_FROM_STACK = 8
TRACE_FROM_OVERLAY = 9
TRACE_FROM_NETWORK = 10
TRACE_TO_NETWORK = 11

TRACE_POINTS: dict[int, str] = {
    TRACE_TO_LXC: "to-endpoint",
    TRACE_TO_PROXY: "to-proxy",
    TRACE_TO_HOST: "to-host",
    TRACE_TO_STACK: "to-stack",
    TRACE_TO_OVERLAY: "to-overlay",
    TRACE_FROM_LXC: "from-endpoint",
    TRACE_FROM_PROXY: "from-proxy",
    TRACE_FROM_HOST: "from-host",
    TRACE_FROM_STACK: "from-stack",
    TRACE_FROM_OVERLAY: "from-overlay",
    TRACE_FROM_NETWORK: "from-network",
    TRACE_TO_NETWORK: "to-network",
    12: "from-crypto",
    13: "to-crypto",
}
TRACE_POINT_NUMBERS = {name: number for number, name in TRACE_POINTS.items()}

# Verdicts: flow.Verdict (fs_event.verdict).
VERDICT_FORWARDED = 1
VERDICT_DROPPED = 2

# Lost-event sources: flow.LostEventSource, kept in the sub-type of an EVENT_LOST record.
LOST_KERNEL_BUFFER = 1
LOST_AGENT_QUEUE = 2
LOST_RING_OVERRUN = 3

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

# Drop reasons: Cilium's drop codes (flow.DropReason, the sub-type of a drop event); those the datapath gives.
DROP_POLICY_DENIED = 133  # no rule allows it, in a direction some rule covers (default deny)
DROP_CT_INVALID_HDR = 135  # at an enforcing endpoint: headers cut short, so no policy can judge it
DROP_MISSED_TAIL_CALL = 140  # a tail call found its slot empty
DROP_WRITE_ERROR = 141  # a service's translation could not be written into the packet
DROP_CT_MAP_INSERTION_FAILED = 155  # at an enforcing endpoint: no room to track the connection
DROP_FRAG_NOSUPPORT = 157  # at an enforcing endpoint: a later IP fragment carries no ports to judge
DROP_SERVICE_BACKEND_NOT_FOUND = 158  # to a service frontend that has no backend
DROP_NAT_NO_MAPPING = 167  # a NodePort connection to a remote backend found no free source port for its SNAT
DROP_POLICY_DENY = 181  # an explicit deny rule matched

# A trace or drop event of a packet a service translated (or dropped for want of a backend): this bit in
# policy_flags, and the frontend id in rule (bpf/include/flowscope/lb.h FS_PF_XLATED).
XLATED_FLAG = 0x80

# The text hubble prints for a Cilium drop code.
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

# Policy match types: Cilium's numbers (flow.policy_match_type), and the words hubble prints for them.
MATCH_NONE = 0
MATCH_L3_ONLY = 1
MATCH_L3_L4 = 2
MATCH_L4_ONLY = 3
MATCH_ALL = 4
MATCH_L3_PROTO = 5
MATCH_PROTO_ONLY = 6

POLICY_MATCH_TYPES: dict[int, str] = {
    MATCH_NONE: "none",
    MATCH_L3_ONLY: "L3-Only",
    MATCH_L3_L4: "L3-L4",
    MATCH_L4_ONLY: "L4-Only",
    MATCH_ALL: "all",
    MATCH_L3_PROTO: "L3-Proto",
    MATCH_PROTO_ONLY: "Proto-Only",
}

# Cilium's reserved security identities: printed as `(world)`, accepted by --identity by name.
IDENTITY_UNKNOWN = 0
IDENTITY_HOST = 1
IDENTITY_WORLD = 2
IDENTITY_REMOTE_NODE = 6

RESERVED_IDENTITIES: dict[int, str] = {
    IDENTITY_UNKNOWN: "unknown",
    IDENTITY_HOST: "host",
    IDENTITY_WORLD: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    IDENTITY_REMOTE_NODE: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
}
RESERVED_IDENTITY_NUMBERS = {name: number for number, name in RESERVED_IDENTITIES.items() if number}


# IP protocol numbers (IANA), and the names Cilium's policy gives the ones it knows (toPorts[].protocol, and
# `flowscope policy check --protocol`); ICMPv6 is written so when printed.
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
POLICY_PROTOCOLS: dict[str, int] = {
    "TCP": IPPROTO_TCP,
    "UDP": IPPROTO_UDP,
    "SCTP": IPPROTO_SCTP,
    "ICMP": IPPROTO_ICMP,
    "ICMPV6": IPPROTO_ICMPV6,
}
POLICY_PROTOCOL_NAMES: dict[int, str] = {number: name for name, number in POLICY_PROTOCOLS.items()} | {
    IPPROTO_ICMPV6: "ICMPv6"
}

# DNS response codes (RFC 1035, 2136) as Hubble's Summary of a DNS answer names them: gopacket's words
# ("DNS Answer RCode: Non-Existent Domain TTL: ..."). The agent's summaries and the CLI's made ones use these.
DNS_RCODE_TEXT: dict[int, str] = {
    0: "No Error",
    1: "Format Error",
    2: "Server Failure",
    3: "Non-Existent Domain",
    4: "Not Implemented",
    5: "Query Refused",
    6: "Name Exists when it should not",
    7: "RR Set Exists when it should not",
    8: "RR Set that should exist does not",
    9: "Server Not Authoritative for zone",
    10: "Name not contained in zone",
}
