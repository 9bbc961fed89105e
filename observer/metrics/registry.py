"""The handlers `--metrics` may name, and the handlers a `--metrics` value makes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from flowscope.observer.metrics.dns import DnsHandler
from flowscope.observer.metrics.drop import DropHandler
from flowscope.observer.metrics.flow import FlowHandler
from flowscope.observer.metrics.flows_to_world import FlowsToWorldHandler
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.http import HttpHandler
from flowscope.observer.metrics.icmp import IcmpHandler
from flowscope.observer.metrics.labels import DEFAULT_LABEL_SETS
from flowscope.observer.metrics.options import parse_metrics
from flowscope.observer.metrics.policy import PolicyHandler
from flowscope.observer.metrics.port_distribution import PortDistributionHandler
from flowscope.observer.metrics.tcp import TcpHandler

HANDLERS: dict[str, type[Handler]] = {
    handler.name: handler
    for handler in (
        FlowHandler,
        DropHandler,
        TcpHandler,
        PortDistributionHandler,
        IcmpHandler,
        PolicyHandler,
        DnsHandler,
        HttpHandler,
        FlowsToWorldHandler,
    )
}


def overflow_counter(registry: CollectorRegistry) -> Counter:
    """Flows a metric did not count under their own labels because it had reached its bound of label sets."""
    return Counter(
        "flowscope_metrics_label_sets_overflow_total",
        "Flows not counted under their labels: the metric had as many label sets as it may keep",
        ["metric"],
        registry=registry,
    )


def make_handlers(
    text: str, registry: CollectorRegistry, overflow: Counter, limit: int = DEFAULT_LABEL_SETS
) -> list[Handler]:
    """The handlers a `--metrics` value asks for, their metrics registered; MetricsOptionError if it is wrong."""
    return [
        HANDLERS[spec.name](spec.options, registry, overflow, limit)
        for spec in parse_metrics(text, frozenset(HANDLERS))
    ]


def check_metrics(text: str) -> None:
    """Raise MetricsOptionError with the reason if a `--metrics` value cannot be used (before the agent starts)."""
    registry = CollectorRegistry(auto_describe=True)
    make_handlers(text, registry, overflow_counter(registry))
