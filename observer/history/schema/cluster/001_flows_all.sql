-- A cluster of ClickHouse servers: every server holds its shard in `flows` (../001_flows.sql) and this
-- Distributed table over all of them; writers insert into it (rows spread at random) and readers ask it.
-- {cluster} is the server's own macro (config.xml <macros>), expanded by ClickHouse; an empty database makes
-- each shard's replica use its default_database (several shards on one server, as in the tests).
CREATE TABLE IF NOT EXISTS flows_all AS flows
ENGINE = Distributed('{cluster}', '', flows, rand());
