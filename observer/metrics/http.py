"""http: `hubble_http_requests_total{method, protocol, reporter}`, `hubble_http_responses_total{method,
protocol, status, reporter}` and `hubble_http_request_duration_seconds{method, reporter}`, from the L7 flows of
HTTP messages.

As Hubble's (v1) handler: reporter is "client" for a message seen leaving its client (egress), "server" for one
arriving at its server (ingress), "unknown" otherwise; a response's latency (paired with its request) is the
duration observed.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.l7_messages import l7_messages

_REPORTERS: dict[int, str] = {flow_pb2.EGRESS: "client", flow_pb2.INGRESS: "server"}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # Prometheus' default buckets


class HttpHandler(Handler):
    name = "http"

    def setup(self) -> None:
        self.requests = self.counter(
            "http_requests_total", "Count of HTTP requests", ["method", "protocol", "reporter"]
        )
        self.responses = self.counter(
            "http_responses_total", "Count of HTTP responses", ["method", "protocol", "status", "reporter"]
        )
        self.durations = self.histogram(
            "http_request_duration_seconds",
            "Quantiles of HTTP request duration in seconds",
            ["method", "reporter"],
            _BUCKETS,
        )

    def count(self, batch: MetricsBatch) -> None:
        for row, layer7 in l7_messages(batch, "http"):
            http = layer7.http
            context = self.context_values(batch, row)
            reporter = _REPORTERS.get(int(batch.directions[row]), "unknown")
            if layer7.type == flow_pb2.REQUEST:
                self.requests.inc((*context, http.method, http.protocol, reporter))
            elif layer7.type == flow_pb2.RESPONSE:
                self.responses.inc((*context, http.method, http.protocol, str(http.code), reporter))
                if layer7.latency_ns:
                    self.durations.observe((*context, http.method, reporter), layer7.latency_ns / 1e9)
