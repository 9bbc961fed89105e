"""DNS messages read from a captured payload, as Hubble's `l7.dns` reports them.

A capture is whatever a pod sent, cut at the datapath's capture length: the parser decodes a message as far as it
is valid and says when it stopped early (`truncated`), and never raises. Only a payload whose header could not
be DNS at all gives None, so that traffic on port 53 that is something else stays a plain L3/L4 flow.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass

HEADER_LEN = 12
MAX_MESSAGE = 65535
MIN_QUESTION = 5  # root name, type, class
MIN_RECORD = 11  # root name, type, class, ttl, rdlength
MAX_POINTER_HOPS = 64  # a longer chain of compression pointers is a loop, or as good as one
MAX_NAME = 255  # RFC 1035 3.1: a name in wire form is at most 255 bytes
VALID_OPCODES = frozenset({0, 1, 2, 4, 5, 6})  # QUERY, IQUERY, STATUS, NOTIFY, UPDATE, DSO

V4_MAPPED = bytes(10) + b"\xff\xff"

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_OPT = 41

# Type mnemonics as miekg/dns (Hubble's DNS library) prints them; an unknown type prints as TYPE<n> (RFC 3597).
TYPE_NAMES: dict[int, str] = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL",
    12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN",
    21: "RT", 22: "NSAPPTR", 24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT",
    31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT",
    42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY", 58: "TALINK",
    59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 100: "UINFO", 101: "UID", 102: "GID", 103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64",
    107: "LP", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA", 258: "AVC", 259: "AMTRELAY", 32768: "TA", 32769: "DLV",
}  # fmt: skip

# Bytes a name's text shows as \X (as dig and miekg/dns do), so the text reads back as the same labels.
_SPECIAL = frozenset(b'.;\\()"@$ ')
_PLAIN = re.compile(rb"[0-9A-Za-z_*/-]+")


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """One DNS message, with the fields Hubble's `flow.DNS` carries plus the header bits that explain them.

    `truncated` means the capture (or the message) ended or went wrong before every section was read: the
    fields hold what came before. `tc` is the header's TC bit: the server itself cut the answer short.
    """

    id: int
    response: bool
    rcode: int
    query: str
    qtypes: tuple[str, ...]
    rrtypes: tuple[str, ...]
    ips: tuple[str, ...]
    ttl: int
    cnames: tuple[str, ...]
    truncated: bool
    tc: bool = False


def type_name(rrtype: int) -> str:
    """A type's mnemonic as Hubble prints it ("A", "AAAA", "HTTPS"), TYPE<n> when it has none."""
    return TYPE_NAMES.get(rrtype) or f"TYPE{rrtype}"


class _Stop(Exception):
    """The message went wrong or ran out here: what was decoded before stays, the rest is not read."""


def _label_text(label: bytes) -> str:
    """One label as dig prints it: lower-case, special bytes as \\X, unprintable ones as \\DDD."""
    if _PLAIN.fullmatch(label):
        return label.decode().lower()
    out: list[str] = []
    for byte in label:
        if byte in _SPECIAL:
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte).lower())
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """The name at offset (following compression pointers) as text with a trailing dot, and the offset after it."""
    labels: list[str] = []
    end = -1  # where the name ends in place: after its first pointer, or after its root label
    hops = 0
    wire_len = 1
    while True:
        if offset >= len(msg):
            raise _Stop
        length = msg[offset]
        kind = length & 0xC0
        if kind == 0xC0:
            if offset + 2 > len(msg):
                raise _Stop
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise _Stop
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            continue
        if kind:
            raise _Stop  # 0x40 and 0x80 label types are obsolete or never assigned
        if length == 0:
            break
        label = msg[offset + 1 : offset + 1 + length]
        if len(label) < length:
            raise _Stop
        wire_len += length + 1
        if wire_len > MAX_NAME:
            raise _Stop
        labels.append(_label_text(label))
        offset += 1 + length
    if end < 0:
        end = offset + 1
    return ".".join(labels) + ".", end


def _dns_like(msg: bytes) -> bool:
    """Whether a header could start a DNS message: a known opcode, and counts that 64 KiB could hold."""
    if len(msg) < HEADER_LEN:
        return False
    flags, qd, an, ns, ar = struct.unpack_from("!HHHHH", msg, 2)
    if (flags >> 11) & 0xF not in VALID_OPCODES or (flags & 0x0040):  # the Z bit is always zero
        return False
    if qd == 0 and an == 0:
        return False
    return HEADER_LEN + qd * MIN_QUESTION + (an + ns + ar) * MIN_RECORD <= MAX_MESSAGE


def _message(payload: bytes, tcp: bool) -> tuple[bytes, bool]:
    """The first message of a payload (TCP: after its 2-byte length) and whether the capture cut it short."""
    if not tcp:
        return payload, False
    if len(payload) < 2:
        return b"", True
    (length,) = struct.unpack_from("!H", payload)
    msg = payload[2 : 2 + length]
    return msg, len(msg) < length


def parse_dns(payload: bytes, tcp: bool) -> DnsMessage | None:
    """The DNS message at the start of a UDP or TCP payload, decoded as far as valid; None when it is not DNS."""
    msg, cut = _message(payload, tcp)
    if not _dns_like(msg):
        return None
    return _Decoder(msg).decode(cut)


def _ipv6_text(address: bytes) -> str:
    """An AAAA address as Hubble prints it (Go's net.IP): an IPv4-mapped one as the IPv4 address it maps."""
    if address.startswith(V4_MAPPED):
        return socket.inet_ntop(socket.AF_INET, address[12:])
    return socket.inet_ntop(socket.AF_INET6, address)


class _Decoder:
    """Walks one message's sections, keeping what Hubble reports; `_Stop` ends the walk with what it has."""

    def __init__(self, msg: bytes) -> None:
        self.msg = msg
        self.offset = HEADER_LEN
        self.query = ""
        self.qtypes: list[str] = []
        self.rrtypes: list[str] = []
        self.ips: list[str] = []
        self.cnames: list[str] = []
        self.ttl: int | None = None
        self.extended_rcode = 0

    def decode(self, cut: bool) -> DnsMessage:
        ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", self.msg)
        truncated = cut
        try:
            for index in range(qd):
                self._question(first=index == 0)
            for _ in range(an):
                self._record(answer=True)
            for _ in range(ns + ar):
                self._record(answer=False)
        except _Stop:
            truncated = True
        return DnsMessage(
            id=ident,
            response=bool(flags & 0x8000),
            rcode=(self.extended_rcode << 4) | (flags & 0xF),
            query=self.query,
            qtypes=tuple(self.qtypes),
            rrtypes=tuple(self.rrtypes),
            ips=tuple(self.ips),
            ttl=self.ttl or 0,
            cnames=tuple(self.cnames),
            truncated=truncated,
            tc=bool(flags & 0x0200),
        )

    def _fixed(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.msg):
            raise _Stop
        values = struct.unpack_from(fmt, self.msg, self.offset)
        self.offset += size
        return values

    def _question(self, first: bool) -> None:
        name, self.offset = _read_name(self.msg, self.offset)
        qtype, _qclass = self._fixed("!HH")
        if first:
            self.query = name
        self.qtypes.append(type_name(qtype))

    def _record(self, answer: bool) -> None:
        _name, self.offset = _read_name(self.msg, self.offset)
        rrtype, _rrclass, ttl, rdlength = self._fixed("!HHIH")
        rdata_at = self.offset
        if rdata_at + rdlength > len(self.msg):
            raise _Stop
        self.offset += rdlength
        if rrtype == TYPE_OPT:
            self.extended_rcode = ttl >> 24  # RFC 6891: the upper 8 bits of a 12-bit rcode
            return
        if not answer:
            return
        self.rrtypes.append(type_name(rrtype))
        self.ttl = ttl if self.ttl is None else min(self.ttl, ttl)
        rdata = self.msg[rdata_at : rdata_at + rdlength]
        if rrtype == TYPE_A and rdlength == 4:
            self.ips.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rrtype == TYPE_AAAA and rdlength == 16:
            self.ips.append(_ipv6_text(rdata))
        elif rrtype == TYPE_CNAME:
            target, end = _read_name(self.msg, rdata_at)
            if end != self.offset:
                raise _Stop  # a CNAME whose name does not fill its rdata is malformed
            self.cnames.append(target)
