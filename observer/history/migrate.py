"""The history schema, applied in order: observer/history/schema/NNN_*.sql, each once.

Applied versions are recorded in a table of the migrator's own (flowscope_migrations), so running it again
applies only what is new: idempotent, and safe to run at every agent's start. A file may hold several
statements separated by `;` (the HTTP interface takes one at a time). The cluster variant adds the files of
schema/cluster/ (the Distributed table) after the local ones; run it against every server of the cluster.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from flowscope.observer.history.clickhouse import ClickHouse, quote

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).parent / "schema"
LEDGER = "flowscope_migrations"
LOCAL_TABLE = "flows"
CLUSTER_TABLE = "flows_all"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int  # local files 1-999, cluster files 1001-1999: one ledger for both
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def statements(self) -> list[str]:
        text = "\n".join(line for line in self.path.read_text().splitlines() if not line.lstrip().startswith("--"))
        return [statement.strip() for statement in text.split(";") if statement.strip()]


def migrations(cluster: bool = False) -> list[Migration]:
    """The schema's files in the order they apply."""
    found = [Migration(int(m.group(1)), p) for p in sorted(SCHEMA.glob("*.sql")) if (m := _NAME.match(p.name))]
    if cluster:
        folder = SCHEMA / "cluster"
        found += [
            Migration(1000 + int(m.group(1)), p) for p in sorted(folder.glob("*.sql")) if (m := _NAME.match(p.name))
        ]
    return found


def applied(client: ClickHouse) -> set[int]:
    client.execute(
        f"CREATE TABLE IF NOT EXISTS {LEDGER} (version UInt32, name String, applied DateTime DEFAULT now()) "
        "ENGINE = TinyLog"
    )
    return {int(line) for line in client.execute(f"SELECT version FROM {LEDGER}").split()}


def migrate(client: ClickHouse, cluster: bool = False) -> list[str]:
    """Apply what is not applied yet (the URL's database created first); the names of the files applied now."""
    create_database(client)
    done = applied(client)
    now = []
    for migration in migrations(cluster):
        if migration.version in done:
            continue
        for statement in migration.statements():
            client.execute(statement)
        client.execute(f"INSERT INTO {LEDGER} (version, name) VALUES ({migration.version}, {quote(migration.name)})")
        log.info("history schema: applied %s", migration.name)
        now.append(migration.name)
    return now


def create_database(client: ClickHouse) -> None:
    """The database the URL names, when it is not there yet (asked without it: it may not exist)."""
    endpoint = client.endpoint
    if endpoint.database == "default":
        return
    params = tuple((key, value) for key, value in endpoint.params if key != "database")
    server = ClickHouse(replace(endpoint, params=params), client.timeout)
    try:
        server.execute(f"CREATE DATABASE IF NOT EXISTS {_identifier(endpoint.database)}")
    finally:
        server.close()


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def table_for(cluster: bool) -> str:
    """The table flows are written to and read from."""
    return CLUSTER_TABLE if cluster else LOCAL_TABLE
