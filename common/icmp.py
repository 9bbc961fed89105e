"""ICMP type and code names, as gopacket (and so Hubble's Summary) writes them.

One table for the agent's summaries and the CLI, which words a summary itself when a server sent none:
"EchoRequest", "DestinationUnreachable(Port)", "EchoRequest(Code: 3)", and "200(0)" for a type it does not know.
Kept free of heavy imports: the CLI loads it.
"""

from __future__ import annotations

_Codes = dict[int, str] | None

ICMPV4_TYPES: dict[int, tuple[str, _Codes]] = {
    0: ("EchoReply", None),
    3: (
        "DestinationUnreachable",
        {
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
    ),
    4: ("SourceQuench", None),
    5: ("Redirect", {0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"}),
    8: ("EchoRequest", None),
    9: ("RouterAdvertisement", None),
    10: ("RouterSolicitation", None),
    11: ("TimeExceeded", {0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    12: ("ParameterProblem", {0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}),
    13: ("TimestampRequest", None),
    14: ("TimestampReply", None),
    15: ("InfoRequest", None),
    16: ("InfoReply", None),
    17: ("AddressMaskRequest", None),
    18: ("AddressMaskReply", None),
}

ICMPV6_TYPES: dict[int, tuple[str, _Codes]] = {
    1: (
        "DestinationUnreachable",
        {
            0: "NoRouteToDst",
            1: "AdminProhibited",
            2: "BeyondScopeOfSrc",
            3: "AddressUnreachable",
            4: "PortUnreachable",
            5: "SrcAddressFailedPolicy",
            6: "RejectRouteToDst",
        },
    ),
    2: ("PacketTooBig", None),
    3: ("TimeExceeded", {0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    4: (
        "ParameterProblem",
        {0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"},
    ),
    128: ("EchoRequest", None),
    129: ("EchoReply", None),
    133: ("RouterSolicitation", None),
    134: ("RouterAdvertisement", None),
    135: ("NeighborSolicitation", None),
    136: ("NeighborAdvertisement", None),
    137: ("Redirect", None),
}


def icmp_type_code(types: dict[int, tuple[str, _Codes]], icmp_type: int, code: int) -> str:
    """gopacket's name for an ICMP type and code."""
    known = types.get(icmp_type)
    if known is None:
        return f"{icmp_type}({code})"
    name, codes = known
    if codes is None and code == 0:
        return name
    code_name = codes.get(code) if codes else None
    return f"{name}({code_name})" if code_name else f"{name}(Code: {code})"


def icmp_text(version: int, icmp_type: int, code: int) -> str:
    """ "ICMPv4 EchoRequest", "ICMPv6 DestinationUnreachable(PortUnreachable)", ..."""
    types = ICMPV4_TYPES if version == 4 else ICMPV6_TYPES
    return f"ICMPv{version} " + icmp_type_code(types, icmp_type, code)
