"""Monitor aggregation: its settings, and the agent's sweep of connections' unreported counts."""

from flowscope.observer.aggregation.settings import AggregationSettings, parse_flags, parse_interval_ms, parse_level
from flowscope.observer.aggregation.sweeper import Aggregation

__all__ = ["Aggregation", "AggregationSettings", "parse_flags", "parse_interval_ms", "parse_level"]
