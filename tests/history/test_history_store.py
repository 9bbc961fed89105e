"""The history's pieces against a real ClickHouse (no lab): the schema and its migrator, the writer (batches,
retries through a restart, a bounded buffer), the reader with filters pushed down or applied after, retention,
and the Distributed table over two shards of one server."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from history_server import clickhouse, fresh_database, made_up, needs_clickhouse
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab.history import SHARDS, ClickHouse
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.history import migrate, retention
from flowscope.observer.history.clickhouse import ClickHouse as Client
from flowscope.observer.history.query import build
from flowscope.observer.history.reader import responses
from flowscope.observer.history.writer import ClickHouseWriter, WriterOptions

pytestmark = needs_clickhouse
ALL = 2**64 - 1
NOW = time.time_ns()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    with clickhouse(tmp_path_factory.mktemp("clickhouse")) as running:
        yield running


def stored(url: str, flows: list[observer_pb2.GetFlowsResponse], **options: object) -> ClickHouseWriter:
    writer = ClickHouseWriter(url, WriterOptions(**options))  # type: ignore[arg-type]
    writer.export(flows)
    assert writer.flush(30), writer.counts
    return writer


def read(url: str, request: observer_pb2.GetFlowsRequest, table: str = "flows") -> list[observer_pb2.GetFlowsResponse]:
    client = Client.connect(url)
    try:
        return list(responses(client, request, table))
    finally:
        client.close()


def test_the_migrator_applies_each_file_once(server: ClickHouse) -> None:
    client = Client.connect(fresh_database(server, "migrations"))
    assert migrate.migrate(client) == ["001_flows.sql"]
    assert migrate.migrate(client) == []  # idempotent: nothing new
    assert migrate.migrate(client, cluster=True) == ["001_flows_all.sql"]  # the cluster's table added later
    assert migrate.migrate(client, cluster=True) == []
    tables = client.execute("SHOW TABLES").decode().split()
    assert {"flows", "flows_all", migrate.LEDGER} <= set(tables)
    Client.connect(server.url).execute("DROP DATABASE IF EXISTS made_by_migrator")
    absent = Client.connect(f"{server.url}/?database=made_by_migrator")
    assert migrate.migrate(absent) == ["001_flows.sql"]  # the URL's database is created first


def test_flows_come_back_whole_in_time_order_with_filters(server: ClickHouse) -> None:
    url = fresh_database(server, "roundtrip")
    flows = made_up(300, NOW - 3600 * 10**9)
    writer = stored(url, flows[::-1])  # written newest first: read back in time order anyway
    assert writer.counts.delivered == 300 and writer.counts.undelivered == 0
    writer.close()

    everything = read(url, observer_pb2.GetFlowsRequest(number=ALL))
    assert everything == flows  # exactly the responses written: node, time and the whole Flow

    request = observer_pb2.GetFlowsRequest(number=ALL)
    request.whitelist.add(source_pod=["default/client-1"], verdict=[flow_pb2.DROPPED])
    request.whitelist.add(destination_port=["53"])
    request.blacklist.add(source_ip=["10.0.0.3"])
    expected = [r for r in flows if compile_flow_filters(request.whitelist, request.blacklist)(r.flow)]
    assert build(request, "flows").exact
    assert read(url, request) == expected and len(expected) > 10


def test_a_filter_sql_cannot_take_still_applies(server: ClickHouse) -> None:
    url = fresh_database(server, "postfilter")
    flows = made_up(120, NOW - 7200 * 10**9)
    stored(url, flows).close()
    request = observer_pb2.GetFlowsRequest(number=5)  # --last 5
    request.whitelist.add(source_label=["app=client-2"], destination_pod=["web/"])
    assert not build(request, "flows").exact  # labels are not pushed down: no LIMIT in SQL
    wanted = [r for r in flows if r.flow.source.pod_name == "client-2"][-5:]
    assert read(url, request) == wanted
    first = observer_pb2.GetFlowsRequest(number=4, first=True)
    first.blacklist.add(source_ip=["10.0.0.0/31"])  # a CIDR (10.0.0.0-1): applied after the query
    assert read(url, first) == [r for r in flows if r.flow.IP.source in ("10.0.0.2", "10.0.0.3")][:4]
    since = observer_pb2.GetFlowsRequest(number=ALL)
    since.since.FromNanoseconds(flows[100].time.ToNanoseconds())
    since.until.FromNanoseconds(flows[109].time.ToNanoseconds())
    assert read(url, since) == flows[100:110]


def test_the_writer_keeps_its_buffer_through_a_restart(server: ClickHouse) -> None:
    url = fresh_database(server, "restart")
    flows = made_up(3000, NOW - 600 * 10**9)
    writer = stored(url, flows[:1000], interval_s=0.2)
    server.stop()
    writer.export(flows[1000:2000])  # ClickHouse is away: kept in the buffer, retried with backoff
    wait_for(lambda: writer.counts.failed_inserts >= 2, timeout=30)
    server.restart()
    writer.export(flows[2000:])
    assert writer.flush(60), writer.counts
    assert writer.counts.delivered == 3000 and writer.counts.undelivered == 0
    writer.close()
    assert read(url, observer_pb2.GetFlowsRequest(number=ALL)) == flows


def test_what_does_not_fit_the_buffer_is_counted_lost(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/?database=nowhere"  # nothing listens on the discard port
    told: list[int] = []  # the agent adds these to its queue's lost events (status, GetFlows' LostEvents)
    writer = ClickHouseWriter(url, WriterOptions(max_rows=100, batch_rows=50, interval_s=0.05), on_lost=told.append)
    writer.export(made_up(250, NOW))
    assert writer.counts.undelivered == 150 == sum(told)  # at once, on the exporter's thread: it never waits
    wait_for(lambda: writer.counts.failed_inserts >= 1, timeout=10)
    assert writer.pending == 100
    writer.close(timeout=0.5)
    assert writer.counts.undelivered == 250 == sum(told) and writer.counts.delivered == 0


def test_retention_drops_old_daily_partitions(server: ClickHouse) -> None:
    url = fresh_database(server, "retention")
    day = 86400 * 10**9
    old, recent = made_up(10, NOW - 10 * day), made_up(10, NOW - 60 * 10**9)
    stored(url, old + recent).close()
    client = Client.connect(url)
    assert len(retention.partitions(client)) == 2
    today = dt.datetime.now(dt.UTC).date()
    assert retention.drop_older(client, 3, today) == [today - dt.timedelta(days=10)]
    assert retention.drop_older(client, 3, today) == []
    assert read(url, observer_pb2.GetFlowsRequest(number=ALL)) == recent
    client.close()


def test_the_distributed_table_spreads_over_two_shards(server: ClickHouse) -> None:
    """The cluster schema on one server whose `flowscope` cluster has two shards, each a database of its own."""
    admin = Client.connect(server.url)
    for shard in SHARDS:
        migrate.migrate(Client.connect(fresh_database(server, shard)))
    admin.execute("DROP TABLE IF EXISTS default.flows_all")
    admin.execute("DROP TABLE IF EXISTS default.flows")
    admin.execute(f"DROP TABLE IF EXISTS default.{migrate.LEDGER}")
    url = server.url  # the Distributed table lives in the default database, the shards in theirs
    flows = made_up(400, NOW - 1800 * 10**9)
    writer = stored(url, flows, cluster=True)
    writer.close()
    # Distributed inserts reach the shards in the background
    counts = lambda: [int(admin.execute(f"SELECT count() FROM {s}.flows")) for s in SHARDS]  # noqa: E731
    wait_for(lambda: sum(counts()) == 400, timeout=30)
    assert all(count > 0 for count in counts())
    assert read(url, observer_pb2.GetFlowsRequest(number=ALL), "flows_all") == flows
    request = observer_pb2.GetFlowsRequest(number=ALL)
    request.whitelist.add(verdict=[flow_pb2.DROPPED])
    assert read(url, request, "flows_all") == flows[1::2]
