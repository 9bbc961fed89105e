"""Pairing responses with their requests, for latency: DNS by query id, HTTP/1.x first-in first-out.

Hubble gets latency from its proxy, which sees both halves of every exchange. Here each half is a separate
packet, reported on the client's node (the datapath's client-side rule), so the agent remembers each request
until its response comes:

- DNS: by (client address, client port, protocol, DNS id): that is what a resolver itself matches on.
- HTTP/1.x: per connection (client address, client port, server port), a queue of requests in the order they
  were sent. A server answers them in that order (HTTP/1.1 pipelining and keep-alive), so each response takes
  the oldest. The response carries the request's method and URL, as Hubble's response flows do.

Bounded, because a client may never be answered: at most `capacity` pending DNS queries and `capacity` HTTP
connections, least recently used dropped first, and anything older than `timeout_ns` is forgotten. Each
dropped request is counted (`dropped`), as is each response with no request to pair (`unpaired`).
Used by the ingest thread only: no lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_CAPACITY = 65536
DEFAULT_TIMEOUT_NS = 30 * 1_000_000_000
MAX_PIPELINED = 64  # requests one HTTP connection may have outstanding; more is not an HTTP client

K = TypeVar("K")
V = TypeVar("V")
DnsKey = tuple[bytes, int, int, int]  # client address, client port, IP protocol, DNS id
HttpKey = tuple[bytes, int, int]  # client address, client port, server port


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """An HTTP request waiting for its response: when it was seen, and what the response flow repeats."""

    ts: int
    method: str
    url: str


class Pairing:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, timeout_ns: int = DEFAULT_TIMEOUT_NS) -> None:
        self.capacity = capacity
        self.timeout_ns = timeout_ns
        self._dns: OrderedDict[DnsKey, int] = OrderedDict()
        self._http: OrderedDict[HttpKey, deque[PendingRequest]] = OrderedDict()
        self.dropped = 0  # requests forgotten unanswered (full, too old, or too many on one connection)
        self.unpaired = 0  # responses whose request was not (or no longer) known

    def dns_query(self, key: DnsKey, ts: int) -> None:
        """Remember a query; a retransmission with the same key restarts its clock."""
        if self._dns.pop(key, None) is not None:
            self.dropped += 1
        self._dns[key] = ts
        self._expire(self._dns, ts, lambda sent: sent, lambda sent: 1)
        if len(self._dns) > self.capacity:
            self._dns.popitem(last=False)
            self.dropped += 1

    def dns_response(self, key: DnsKey, ts: int) -> int | None:
        """The response's latency in ns, or None when its query is unknown (then counted as unpaired)."""
        sent = self._dns.pop(key, None)
        if sent is None or ts - sent > self.timeout_ns:
            self.unpaired += 1
            return None
        return max(ts - sent, 0)

    def http_request(self, key: HttpKey, request: PendingRequest) -> None:
        """Queue a request behind the connection's earlier ones."""
        queue = self._http.pop(key, None)
        if queue is None:
            queue = deque()
        elif len(queue) >= MAX_PIPELINED:
            queue.popleft()
            self.dropped += 1
        queue.append(request)
        self._http[key] = queue  # now the most recently used
        self._expire(self._http, request.ts, lambda queue: queue[-1].ts, len)
        if len(self._http) > self.capacity:
            _, evicted = self._http.popitem(last=False)
            self.dropped += len(evicted)

    def http_response(self, key: HttpKey, ts: int) -> PendingRequest | None:
        """The oldest request of the connection this response answers, or None (counted as unpaired)."""
        queue = self._http.get(key)
        while queue:
            request = queue.popleft()
            if ts - request.ts <= self.timeout_ns:
                if not queue:
                    del self._http[key]
                return request
            self.dropped += 1
        self._http.pop(key, None)
        self.unpaired += 1
        return None

    def pending(self) -> int:
        """Requests waiting for their response now."""
        return len(self._dns) + sum(len(queue) for queue in self._http.values())

    def _expire(
        self, table: OrderedDict[K, V], now: int, newest_ts: Callable[[V], int], requests: Callable[[V], int]
    ) -> None:
        """Drop entries from the least recently used end while their newest request is older than the timeout.

        The table's order is by last use, so the first entry still young ends the sweep: constant work per
        request, amortised. `requests(value)` is how many requests an entry held (counted as dropped)."""
        while table:
            key, value = next(iter(table.items()))
            if now - newest_ts(value) <= self.timeout_ns:
                return
            del table[key]
            self.dropped += requests(value)
