"""The L7 source: the datapath's L7 ring buffer turned into L7 flows, on the ingest thread.

The datapath copies the packets of configured L7 ports (DNS, HTTP, TLS ClientHellos) with up to FS_L7_CAPLEN
bytes into a ring buffer of their own (bpf/include/flowscope/l7.h). This source reads it like any other
(`read_batch`, for observer/ingest.py) and hands Ingest records of the MAIN dtype:

- each DNS or HTTP message becomes an entry in the L7 store (Hubble's Layer7 message, its Summary text, the
  columns filters test) and a reference record: the packet's header (type 129, Cilium's access-log type, as
  the datapath wrote it), `location` = the entry's sequence number, and the first bytes of the packet so the
  decoder fills Ethernet, IP and L4 as for any flow. Several HTTP messages in one segment give several records
  with the same header.
- a TLS ClientHello stays the ordinary trace record it is (the datapath did not also send it to the main ring);
  its server name goes to the name cache, where `annotate` finds it for this very record.
- a payload that is not what its port suggests gives no L7 flow (its L3/L4 flow exists anyway), counted.

Responses are paired with their requests for latency (observer/l7/pairing.py); DNS answers and server names
teach the name cache (observer/l7/names.py) before Ingest annotates the batch, which it does after reading
every source. The work is per record in Python, which is fine: L7 records are a small share of the packets,
and the cost per message is what bench/ measures.

Redaction is on by default, stricter than Hubble's default (off): a URL's query and user info become
HUBBLE_REDACTED, and HTTP headers are dropped unless allow-listed (`Redaction`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.l7_ports import L7Port
from flowscope.common.names import DNS_RCODE_TEXT, EVENT_TRACE, IPPROTO_TCP, IPPROTO_UDP
from flowscope.observer.events import HEADER_FIELDS, event_dtype
from flowscope.observer.l7.counts import L7Counts
from flowscope.observer.l7.dns import DnsMessage, parse_dns
from flowscope.observer.l7.http import HttpRequest, HttpResponse, allowed_headers, parse_http, redact_url
from flowscope.observer.l7.names import DnsAnswer
from flowscope.observer.l7.pairing import Pairing, PendingRequest
from flowscope.observer.l7.store import L7Entry, L7Store
from flowscope.observer.l7.tls import parse_client_hello
from flowscope.observer.parser.packet import ETH_P_IP, ETH_P_IPV6, Packet, parse_packet
from flowscope.observer.wallclock import WallClock

REQUEST: flow_pb2.L7FlowType = flow_pb2.REQUEST
RESPONSE: flow_pb2.L7FlowType = flow_pb2.RESPONSE
OBSERVATION_SOURCE = "proxy"  # Cilium's DNSSourceProxy: what Hubble's DNS flows say, and "(Proxy ...)" in Summary
_KEEP = 0  # a reference "sequence number" meaning: pass the record through as it is (TLS)
_HEADER_NAMES = tuple(name for name, _ in HEADER_FIELDS)
_CLOCK_REFRESH_S = 1.0


class BatchReader(Protocol):
    def read_batch(self, timeout: float) -> np.ndarray: ...


class NameLearner(Protocol):
    """What the source tells the name cache (observer/l7/names.py NameCache); addresses in the 16-byte form."""

    def learn_dns(self, client: bytes, message: DnsAnswer, now_ns: int) -> None: ...
    def learn_sni(self, client: bytes, server: bytes, name: str, now_ns: int) -> int: ...


@dataclass(frozen=True)
class Redaction:
    """What of an HTTP message is kept. The defaults redact: flags of `flowscope agent` turn each off."""

    keep_url_query: bool = False
    keep_userinfo: bool = False
    headers: frozenset[str] = frozenset()  # lower-case names of the headers kept; all others are dropped

    def url(self, url: str) -> str:
        return redact_url(url, query=not self.keep_url_query, userinfo=not self.keep_userinfo)

    def keep(self, headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """The allow-listed headers, sorted by name as Hubble sorts them."""
        return tuple(sorted(allowed_headers(tuple(headers), self.headers))) if self.headers else ()


@dataclass(frozen=True, slots=True)
class _Seen:
    """One L7 record's packet: what the parsers and the pairing need besides its payload."""

    ts: int
    saddr: bytes  # 16 bytes, as in the record
    daddr: bytes
    sport: int
    dport: int
    protocol: int
    server_ip: bytes  # the destination address as the packet has it (4 or 16 bytes), for a URL without Host


class L7Source:
    """A BatchSource for Ingest: reads the datapath's L7 ring, stores L7 entries, returns reference records."""

    def __init__(
        self,
        reader: BatchReader,
        ports: Sequence[L7Port],
        store: L7Store,
        *,
        names: NameLearner | None = None,
        redaction: Redaction | None = None,
        counts: L7Counts | None = None,
        pairing: Pairing | None = None,
        dtype: np.dtype | None = None,
    ) -> None:
        """`dtype` is the main flow ring's (its data keeps the packet's first bytes: the headers)."""
        self._reader = reader
        self._kinds = {(_PROTOCOLS[p.protocol], p.port): p.kind for p in ports}
        self.store = store
        self._names = names
        self._redaction = redaction or Redaction()
        self.counts = counts or L7Counts()
        self.pairing = pairing or Pairing()
        self._dtype = dtype or event_dtype()
        self._caplen = self._dtype["data"].itemsize
        self._clock = WallClock()  # records carry kernel time until Ingest stamps them; names expire in wall time
        self._clock_read = time.monotonic()
        self._seen_dropped = self._seen_unpaired = 0
        self._not_l7 = 0  # of the batch being read

    def read_batch(self, timeout: float) -> np.ndarray:
        batch = self._reader.read_batch(timeout)
        if not len(batch):
            return np.zeros(0, dtype=self._dtype)
        self._refresh_clock()
        rows: list[int] = []
        seqs: list[int] = []
        self._not_l7 = 0
        # Columns as Python values once per batch: reading fields of one np.void at a time costs more than the
        # parsing itself.
        stride = batch.dtype["data"].itemsize
        raw = np.ascontiguousarray(batch["data"]).tobytes()
        columns = zip(
            batch["ts"].tolist(),
            batch["type"].tolist(),
            batch["len_cap"].tolist(),
            batch["saddr"].tolist(),
            batch["daddr"].tolist(),
            strict=True,
        )
        tls = 0
        for row, (ts, event_type, len_cap, saddr, daddr) in enumerate(columns):
            data = raw[row * stride : row * stride + len_cap]
            if event_type == EVENT_TRACE:
                tls += 1
                rows.append(row)
                seqs.append(self._client_hello(data, ts, saddr, daddr))
                continue
            for seq in self._messages(data, ts, saddr, daddr):
                rows.append(row)
                seqs.append(seq)
        self._count(messages=len(seqs) - tls)
        return self._references(batch, rows, seqs)

    # --- one record ----------------------------------------------------------------------------------------

    def _messages(self, data: bytes, ts: int, saddr: bytes, daddr: bytes) -> list[int]:
        """The store sequence numbers of one record's L7 messages ([] for none)."""
        found = _seen(data, ts, saddr, daddr)
        entries: list[L7Entry] = []
        if found is not None:
            seen, payload = found
            kind = self._kinds.get((seen.protocol, seen.dport)) or self._kinds.get((seen.protocol, seen.sport))
            if kind == "dns":
                entries = self._dns(seen, payload)
            elif kind == "http":
                entries = self._http(seen, payload)
        if not entries:
            self._not_l7 += 1
            return []
        return [self.store.add(entry) for entry in entries]

    def _dns(self, seen: _Seen, payload: bytes) -> list[L7Entry]:
        message = parse_dns(payload, seen.protocol == IPPROTO_TCP)
        if message is None:
            return []
        if not message.response:
            self.pairing.dns_query((seen.saddr, seen.sport, seen.protocol, message.id), seen.ts)
            return [dns_entry(message, REQUEST, 0)]
        latency = self.pairing.dns_response((seen.daddr, seen.dport, seen.protocol, message.id), seen.ts)
        if self._names is not None:
            self._names.learn_dns(seen.daddr, message, self._wall(seen.ts))
        return [dns_entry(message, RESPONSE, latency or 0)]

    def _http(self, seen: _Seen, payload: bytes) -> list[L7Entry]:
        entries = []
        for message in parse_http(payload):
            if isinstance(message, HttpRequest):
                url = self._redaction.url(absolute_url(message.url, message.host, seen.server_ip, seen.dport))
                self.pairing.http_request(
                    (seen.saddr, seen.sport, seen.dport), PendingRequest(seen.ts, message.method, url)
                )
                entries.append(self._http_request(message, url, seen))
            else:
                request = self.pairing.http_response((seen.daddr, seen.dport, seen.sport), seen.ts)
                entries.append(self._http_response(message, request, seen))
        return entries

    def _http_request(self, message: HttpRequest, url: str, seen: _Seen) -> L7Entry:
        summary = f"{message.protocol} {message.method} {url}"
        return self._http_entry(REQUEST, message, message.method, url, 0, summary)

    def _http_response(self, message: HttpResponse, request: PendingRequest | None, seen: _Seen) -> L7Entry:
        """A response carries its request's method and url, as Hubble's do (empty when it had none)."""
        method, url = (request.method, request.url) if request else ("", "")
        latency = max(seen.ts - request.ts, 0) if request else 0
        summary = f"{message.protocol} {message.code} {latency // 1_000_000}ms ({method} {url})"
        return self._http_entry(RESPONSE, message, method, url, latency, summary)

    def _http_entry(
        self,
        l7_type: flow_pb2.L7FlowType,
        message: HttpRequest | HttpResponse,
        method: str,
        url: str,
        latency: int,
        summary: str,
    ) -> L7Entry:
        """One HTTP message's entry: Hubble's Layer7 with the allow-listed headers, and the filters' columns."""
        headers = self._redaction.keep(message.headers)
        code = message.code if isinstance(message, HttpResponse) else 0
        http = flow_pb2.HTTP(code=code, method=method, url=url, protocol=message.protocol)
        http.headers.extend(flow_pb2.HTTPHeader(key=k, value=v) for k, v in headers)
        layer7 = flow_pb2.Layer7(type=l7_type, latency_ns=latency, http=http)
        return L7Entry(
            layer7=layer7.SerializeToString(),
            summary=summary,
            truncated=message.truncated,
            kind="http",
            l7_type=l7_type,
            http_code=code,
            http_method=method,
            http_url=url,
            http_path=urlsplit(url).path if url else "",
            http_headers=headers,
        )

    def _client_hello(self, data: bytes, ts: int, saddr: bytes, daddr: bytes) -> int:
        """A ClientHello's record passes as the trace record it is; its server name teaches the name cache, and
        the name's set id goes into the record's `location` (0: none), for the decoder's Summary."""
        found = _seen(data, ts, saddr, daddr)
        if found is None or self._names is None:
            return _KEEP
        seen, payload = found
        hello = parse_client_hello(payload)
        if hello is None or not hello.server_name:
            return _KEEP
        return self._names.learn_sni(seen.saddr, seen.daddr, hello.server_name, self._wall(seen.ts))

    # --- the batch -----------------------------------------------------------------------------------------

    def _references(self, batch: np.ndarray, rows: list[int], seqs: list[int]) -> np.ndarray:
        """The records Ingest stores: each chosen row's header, its packet's first bytes, and in `location` its
        entry's seq (a ClientHello's: its server name's set id)."""
        out = np.zeros(len(rows), dtype=self._dtype)
        if not rows:
            return out
        chosen = batch[np.asarray(rows, dtype=np.intp)]
        for name in _HEADER_NAMES:
            out[name] = chosen[name]
        raw = np.ascontiguousarray(chosen["data"]).view(np.uint8).reshape(len(chosen), -1)
        out["data"] = np.ascontiguousarray(raw[:, : self._caplen]).view(f"V{self._caplen}").reshape(len(chosen))
        out["len_cap"] = np.minimum(chosen["len_cap"], self._caplen)
        seq = np.asarray(seqs, dtype=np.uint64)
        referenced = seq != _KEEP
        out["location"][referenced] = seq[referenced]
        return out

    def _count(self, messages: int) -> None:
        """Add the batch's counts at once (the counters take a lock): its messages, what was not L7, and what
        the pairing dropped or could not pair."""
        pairing = self.pairing
        dropped, unpaired = pairing.dropped - self._seen_dropped, pairing.unpaired - self._seen_unpaired
        self._seen_dropped, self._seen_unpaired = pairing.dropped, pairing.unpaired
        if messages or self._not_l7 or dropped or unpaired:
            self.counts.add(messages=messages, not_l7=self._not_l7, dropped=dropped, unpaired=unpaired)

    def _refresh_clock(self) -> None:
        now = time.monotonic()
        if now - self._clock_read >= _CLOCK_REFRESH_S:
            self._clock.refresh()
            self._clock_read = now

    def _wall(self, kernel_ns: int) -> int:
        return kernel_ns + self._clock.offset_ns


_PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


def _seen(data: bytes, ts: int, saddr: bytes, daddr: bytes) -> tuple[_Seen, bytes] | None:
    """A record's packet as the parsers and the pairing need it, and its L4 payload; None without TCP or UDP."""
    packet = parse_packet(data)
    if not packet.l4 or packet.protocol not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    seen = _Seen(
        ts=ts,
        saddr=saddr,
        daddr=daddr,
        sport=packet.sport,
        dport=packet.dport,
        protocol=packet.protocol,
        server_ip=packet.dst_ip,
    )
    return seen, _payload(data, packet)


def _payload(data: bytes, packet: Packet) -> bytes:
    """The L4 payload's captured bytes, up to the IP packet's end (Ethernet may pad a short frame)."""
    l4 = packet.l4_offset
    if packet.protocol == IPPROTO_TCP:
        start = l4 + (data[l4 + 12] >> 4) * 4 if len(data) > l4 + 12 else len(data)
    else:
        start = l4 + 8
    ip = 14 + 4 * len(packet.vlans)
    end = len(data)
    if packet.ethertype == ETH_P_IP and len(data) >= ip + 4:
        end = min(end, ip + int.from_bytes(data[ip + 2 : ip + 4], "big"))
    elif packet.ethertype == ETH_P_IPV6 and len(data) >= ip + 6:
        end = min(end, ip + 40 + int.from_bytes(data[ip + 4 : ip + 6], "big"))
    return data[start:end]


def dns_entry(message: DnsMessage, l7_type: flow_pb2.L7FlowType, latency_ns: int) -> L7Entry:
    """A DNS message as Hubble's proxy reports it: a request says what was asked, a response what came back."""
    qtypes = ",".join(message.qtypes)
    dns = flow_pb2.DNS(query=message.query, observation_source=OBSERVATION_SOURCE, qtypes=message.qtypes)
    if l7_type == REQUEST:
        summary = f"DNS Query {message.query} {qtypes}"
    else:
        dns.ips.extend(message.ips)
        dns.ttl = message.ttl
        dns.cnames.extend(message.cnames)
        dns.rcode = message.rcode
        dns.rrtypes.extend(message.rrtypes)
        summary = f"DNS Answer {_answer_text(message)} TTL: {message.ttl} (Proxy {message.query} {qtypes})"
    layer7 = flow_pb2.Layer7(type=l7_type, latency_ns=latency_ns, dns=dns)
    return L7Entry(
        layer7=layer7.SerializeToString(),
        summary=summary,
        truncated=message.truncated,
        kind="dns",
        l7_type=l7_type,
        dns_query=message.query,
        dns_rcode=message.rcode if l7_type == RESPONSE else 0,
    )


def _answer_text(message: DnsMessage) -> str:
    """What Hubble's Summary says a response answered: an error's name, or the addresses and CNAMEs."""
    if message.rcode:
        return f"RCode: {DNS_RCODE_TEXT.get(message.rcode, 'Unknown')}"
    parts = []
    if message.ips:
        parts.append(_quoted(",".join(message.ips)))
    if message.cnames:
        parts.append("CNAMEs: " + _quoted(",".join(message.cnames)))
    return " ".join(parts)


def _quoted(text: str) -> str:
    """Go's %q for the plain text of names and addresses."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def absolute_url(target: str, host: str, server: bytes, port: int) -> str:
    """The URL as Hubble's proxy logs it ("http://web.web.svc.lab/status/200"): the request line's target
    with the scheme and the Host header (or the server's address when the request has none)."""
    if not target.startswith("/"):
        return target  # absolute-form (to a proxy), or "*" / authority-form: as sent
    if not host:
        text = (
            socket.inet_ntop(socket.AF_INET, server)
            if len(server) == 4
            else f"[{socket.inet_ntop(socket.AF_INET6, server)}]"
        )
        host = text if port == 80 else f"{text}:{port}"
    return f"http://{host}{target}"
