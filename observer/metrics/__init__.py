"""Prometheus metrics, as Hubble's pkg/hubble/metrics: handlers counting flows into `hubble_*` families, and
the agent's own `flowscope_*` metrics, served on `--metrics-address` (docs/metrics.md).

options.py reads `--metrics`; context.py the context options; batch.py gives a batch's flow facts as columns;
labels.py counts a batch by its distinct label sets; one module per handler (flow, drop, tcp,
port_distribution, icmp, policy, dns, http); registry.py names them; subscriber.py runs them on the ingest
thread; agent_metrics.py and server.py read and serve; node.py puts it together for the agent.
"""

from flowscope.observer.metrics.options import DEFAULT_HANDLERS, MetricsOptionError

__all__ = ["DEFAULT_HANDLERS", "MetricsOptionError"]
