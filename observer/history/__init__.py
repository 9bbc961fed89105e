"""A cluster's history in ClickHouse: the schema and its migrator, the writer (a sink of the exporter pipeline),
retention by daily partitions, and the reader that answers GetFlows requests from it (docs/history.md)."""
