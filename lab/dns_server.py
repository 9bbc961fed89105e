"""The lab's cluster DNS: answers A and AAAA for services and pods over UDP and TCP.

`<service>.<namespace>.svc.lab.` is a service's ClusterIPs, as in Kubernetes' DNS; `<pod>.<namespace>.pod.lab.`
is a pod's addresses, and so is `<pod>.<namespace>.svc.lab.` unless a service of that name in that namespace
takes it (web/web: the service and the pod share the name, and the service wins, as `svc` is the services' zone).

It plays CoreDNS in the `kube-system` namespace so the lab has real DNS traffic (queries, answers, NXDOMAIN,
DNS over TCP) for a flow observer to see. Records come from the cluster metadata file, re-read whenever it
changes. It speaks the DNS wire format (RFC 1035) itself: a question in, an authoritative answer out.

    python -m lab.dns_server --cluster-file /run/flowscope/labs/lab/cluster.json [--port 53]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flowscope.lab.dualstack import TCPServer, UDPServer, serve_until_terminated
from flowscope.lab.topology import DNS_PORT, DOMAIN, POD_DOMAIN
from flowscope.observer.metadata import Cluster

TYPE_A, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 28, 41, 255
CLASS_IN = 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
TTL = 30
_HEADER = struct.Struct("!HHHHHH")  # id, flags, questions, answers, authority, additional


class FormatError(ValueError):
    """The message is not a DNS query we can read."""


@dataclass(frozen=True)
class Question:
    name: str  # lower case, with the trailing dot
    qtype: int
    qclass: int
    wire: bytes  # the question as it came, echoed back in the answer


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    question: Question
    edns: bool  # the client sent an OPT record, so it gets one back


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """A domain name made of plain labels (queries do not compress names) and the offset after it."""
    labels: list[str] = []
    while True:
        if offset >= len(message):
            raise FormatError("name runs past the message")
        length = message[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower() + ".", offset
        if length > 63:
            raise FormatError("compressed or extended label in a question")
        labels.append(message[offset : offset + length].decode("ascii", errors="replace"))
        offset += length


def encode_name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def parse_query(message: bytes) -> Query:
    if len(message) < _HEADER.size:
        raise FormatError("shorter than a header")
    qid, flags, qdcount, _, _, arcount = _HEADER.unpack_from(message)
    if flags & 0x8000 or qdcount != 1:
        raise FormatError("not a query with one question")
    name, offset = read_name(message, _HEADER.size)
    if offset + 4 > len(message):
        raise FormatError("question cut short")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    question = Question(name, qtype, qclass, message[_HEADER.size : offset + 4])
    offset += 4
    edns = False
    if arcount:  # an OPT record: an empty (root) name, then its type
        edns = message[offset : offset + 3] == b"\0" + struct.pack("!H", TYPE_OPT)
    return Query(qid, flags, question, edns)


@dataclass
class Zone:
    """Addresses by name, from the cluster metadata file; reloaded when the file changes."""

    cluster_file: Path
    records: dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = field(default_factory=dict)
    _version: tuple[int, int] = (0, 0)  # (inode, mtime): the metadata file is replaced whole when it changes
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
        """The addresses of a name, or None when the name does not exist."""
        self._reload_if_changed()
        return self.records.get(name)

    def _reload_if_changed(self) -> None:
        try:
            stat = self.cluster_file.stat()
        except OSError:
            return  # keep serving what we had
        version = (stat.st_ino, stat.st_mtime_ns)
        with self._lock:
            if version == self._version:
                return
            self.records = records(Cluster.load(self.cluster_file))
            self._version = version


def records(cluster: Cluster) -> dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Every name of the zone and its addresses: pods in both zones, then the services in force over them."""
    found = {}
    for ep in cluster.endpoints:
        addresses = [ipaddress.ip_address(ip) for ip in ep.ips]
        for domain in (POD_DOMAIN, DOMAIN):
            found[f"{ep.pod}.{ep.namespace}.{domain}.".lower()] = addresses
    for service in cluster.valid_services():
        found[f"{service.name}.{service.namespace}.{DOMAIN}.".lower()] = [
            ipaddress.ip_address(ip) for ip in service.cluster_ips
        ]
    return found


def answer(query: Query, zone: Zone) -> bytes:
    """The authoritative response to a query."""
    q = query.question
    opcode = (query.flags >> 11) & 0xF
    records: list[bytes] = []
    if opcode != 0:
        rcode = NOTIMP
    elif q.qclass not in (CLASS_IN, TYPE_ANY):
        rcode = REFUSED
    else:
        addresses = zone.lookup(q.name)
        rcode = NXDOMAIN if addresses is None else NOERROR
        for address in addresses or []:
            rtype = TYPE_A if address.version == 4 else TYPE_AAAA
            if q.qtype in (rtype, TYPE_ANY):
                # 0xC00C points back at the question's name, right after the header.
                rdata = address.packed
                records.append(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL, len(rdata)) + rdata)
    flags = 0x8000 | (opcode << 11) | 0x0400 | (query.flags & 0x0100) | rcode  # QR, AA, RD copied
    opt = b"\0" + struct.pack("!HHIH", TYPE_OPT, 1232, 0, 0) if query.edns else b""
    header = _HEADER.pack(query.id, flags, 1, len(records), 0, 1 if opt else 0)
    return header + q.wire + b"".join(records) + opt


def respond(message: bytes, zone: Zone) -> bytes | None:
    """The response to a raw message; FORMERR for what is unreadable but has a header; None for noise."""
    try:
        return answer(parse_query(message), zone)
    except FormatError:
        if len(message) < _HEADER.size or message[2] & 0x80:
            return None  # too short to answer, or itself a response: never answer those
        qid, flags = struct.unpack_from("!HH", message)
        return _HEADER.pack(qid, 0x8000 | (flags & 0x7900) | FORMERR, 0, 0, 0, 0)


def _handlers(
    zone: Zone,
) -> tuple[type[socketserver.BaseRequestHandler], type[socketserver.BaseRequestHandler]]:
    class OverUDP(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            response = respond(data, zone)
            if response is not None:
                sock.sendto(response, self.client_address)

    class OverTCP(socketserver.BaseRequestHandler):
        """DNS over TCP: each message has a two-byte length in front; serve until the client closes."""

        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(10)
            with sock.makefile("rb") as stream:
                while len(prefix := stream.read(2)) == 2:
                    (length,) = struct.unpack("!H", prefix)
                    response = respond(stream.read(length), zone)
                    if response is None:
                        return
                    sock.sendall(struct.pack("!H", len(response)) + response)

    return OverUDP, OverTCP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=DNS_PORT)
    args = parser.parse_args(argv)
    zone = Zone(args.cluster_file)
    zone.lookup(".")  # load now, so a broken file fails at start
    over_udp, over_tcp = _handlers(zone)
    print(f"dns: serving {DOMAIN}. and {POD_DOMAIN}. on port {args.port} (udp, tcp)", flush=True)
    serve_until_terminated(UDPServer(("::", args.port), over_udp), TCPServer(("::", args.port), over_tcp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
