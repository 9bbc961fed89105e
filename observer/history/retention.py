"""Retention without TTL (ClickHouse 18.16 has none): the flows table is partitioned by day, and a day older
than the retention is dropped whole with ALTER TABLE ... DROP PARTITION, which costs no rewrite of anything.

On a cluster every server holds its own shard's partitions: run retention against each (every writer does it
for the server its URL names).
"""

from __future__ import annotations

import datetime as dt
import logging

from flowscope.observer.history.clickhouse import ClickHouse, quote
from flowscope.observer.history.migrate import LOCAL_TABLE

log = logging.getLogger(__name__)

CHECK_EVERY_S = 3600.0


def partitions(client: ClickHouse, table: str = LOCAL_TABLE) -> list[dt.date]:
    """The days the table holds, oldest first."""
    answer = client.execute(
        "SELECT DISTINCT partition FROM system.parts "
        f"WHERE database = currentDatabase() AND table = {quote(table)} AND active ORDER BY partition"
    )
    return [dt.date.fromisoformat(line) for line in answer.decode().split()]


def drop_older(client: ClickHouse, days: int, today: dt.date | None = None, table: str = LOCAL_TABLE) -> list[dt.date]:
    """Drop the daily partitions more than `days` days before today (UTC); the days dropped."""
    if days < 1:
        raise ValueError(f"--history-retention-days must be at least 1, not {days}")
    today = today or dt.datetime.now(dt.UTC).date()
    oldest_kept = today - dt.timedelta(days=days)
    dropped = [day for day in partitions(client, table) if day < oldest_kept]
    for day in dropped:
        client.execute(f"ALTER TABLE {table} DROP PARTITION {quote(day.isoformat())}")
        log.info("history retention: dropped the flows of %s (kept %d days)", day, days)
    return dropped
