-- The flows of a cluster, one row per flow. ClickHouse 18.16: no DateTime64 (time in nanoseconds is a UInt64),
-- no TTL (retention drops whole daily partitions, observer/history/retention.py), no LowCardinality without an
-- experimental setting (plain Strings compress as well here). Enum fields are stored as the Flow's numbers, so
-- a filter's value pushes down as it is. `flow` holds the whole Flow message: a history read returns it exactly.
CREATE TABLE IF NOT EXISTS flows
(
    date Date DEFAULT toDate(intDiv(time_ns, 1000000000)),
    time_ns UInt64,
    node String,
    uuid String,
    verdict UInt8,
    drop_reason UInt32,
    type UInt8,
    event_type Int32,
    event_subtype Int32,
    observation_point UInt8,
    traffic_direction UInt8,
    is_reply Int8,
    ip_version UInt8,
    source_ip String,
    destination_ip String,
    l4 String,
    source_port UInt16,
    destination_port UInt16,
    tcp_flags Array(String),
    source_namespace String,
    source_pod String,
    source_workload String,
    source_identity UInt32,
    source_labels Array(String),
    source_names Array(String),
    destination_namespace String,
    destination_pod String,
    destination_workload String,
    destination_identity UInt32,
    destination_labels Array(String),
    destination_names Array(String),
    interface String,
    l7 String,
    l7_type UInt8,
    l7_latency_ns UInt64,
    dns_query String,
    dns_rcode UInt32,
    http_method String,
    http_url String,
    http_code UInt32,
    flow String
)
ENGINE = MergeTree()
PARTITION BY date
ORDER BY (toStartOfHour(toDateTime(intDiv(time_ns, 1000000000))), source_namespace, destination_namespace, time_ns);
