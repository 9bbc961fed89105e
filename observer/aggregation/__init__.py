"""Monitor aggregation in the agent: its settings in the datapath, and the sweep of connections' unreported
counts. The settings' vocabulary, shared with the CLI, is flowscope.common.aggregation."""

from flowscope.observer.aggregation.live import Aggregation

__all__ = ["Aggregation"]
