"""dns: `hubble_dns_queries_total{rcode, qtypes, ips_returned}`, `hubble_dns_responses_total{rcode, qtypes,
ips_returned}` and `hubble_dns_response_types_total{type, qtypes}`, from the L7 flows of DNS messages.

As Hubble's handler: a query counts with an empty rcode and ips_returned; a response by its rcode's name ("No
Error", "Non-Existent Domain"), its question types joined with "," and how many addresses it returned, and once
per answer record type. Options: `query` adds the query name as a label (mind the cardinality), `ignoreAAAA`
skips messages whose only question type is AAAA.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.common.names import DNS_RCODE_TEXT
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.l7_messages import l7_messages


class DnsHandler(Handler):
    name = "dns"
    option_keys = ("query", "ignoreAAAA")

    def setup(self) -> None:
        self.include_query = "query" in self.options
        self.ignore_aaaa = "ignoreAAAA" in self.options
        query = ["query"] if self.include_query else []
        self.queries = self.counter(
            "dns_queries_total", "Number of DNS queries observed", ["rcode", "qtypes", "ips_returned", *query]
        )
        self.responses = self.counter(
            "dns_responses_total", "Number of DNS responses observed", ["rcode", "qtypes", "ips_returned", *query]
        )
        self.response_types = self.counter(
            "dns_response_types_total", "Number of DNS response types", ["type", "qtypes", *query]
        )

    def count(self, batch: MetricsBatch) -> None:
        for row, layer7 in l7_messages(batch, "dns"):
            dns = layer7.dns
            if self.ignore_aaaa and list(dns.qtypes) == ["AAAA"]:
                continue
            context = self.context_values(batch, row)
            qtypes = ",".join(dns.qtypes)
            query = (dns.query,) if self.include_query else ()
            if layer7.type != flow_pb2.RESPONSE:
                self.queries.inc((*context, "", qtypes, "", *query))
                continue
            rcode = DNS_RCODE_TEXT.get(dns.rcode, "")
            self.responses.inc((*context, rcode, qtypes, str(len(dns.ips)), *query))
            for rrtype in dns.rrtypes:
                self.response_types.inc((*context, rrtype, qtypes, *query))
