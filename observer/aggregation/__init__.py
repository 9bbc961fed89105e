"""Monitor aggregation: its settings, and the agent's sweep of connections' unreported counts."""

from flowscope.observer.aggregation.live import Aggregation
from flowscope.observer.aggregation.settings import AggregationSettings, parse_flags, parse_interval_ms, parse_level

__all__ = ["Aggregation", "AggregationSettings", "parse_flags", "parse_interval_ms", "parse_level"]
