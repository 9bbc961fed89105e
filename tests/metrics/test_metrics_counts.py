"""The handlers' counts of a batch of records equal Hubble's handlers run over the flows the decoder makes of
the same records (hubble_reference.py), label for label; and context labels name the endpoints as Hubble's
context options do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hubble_reference import key, reference, scraped
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from records import (
    ACK,
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    DNS_V4,
    FIN,
    KERNEL_REASONS,
    KNOWN,
    REPLY,
    RST,
    SERVER,
    SERVER_V4,
    SERVER_V6,
    SYN,
    WORLD_V4,
    batch_of,
    ether,
    icmp4,
    icmp6,
    ipv4,
    ipv6,
    lab_registry,
    record,
    sctp,
    tcp,
    tcp4,
    udp4,
)

from flowscope.common import names
from flowscope.common.names import IDENTITY_WORLD
from flowscope.observer import events
from flowscope.observer.metrics.batch import Sources
from flowscope.observer.metrics.labels import Column, distinct_rows
from flowscope.observer.metrics.registry import make_handlers, overflow_counter
from flowscope.observer.metrics.subscriber import MetricsSubscriber
from flowscope.observer.parser import FlowDecoder

ALL = "flow,drop,tcp,port-distribution,icmp,policy,dns,http,flows-to-world"


def mixed_batch() -> np.ndarray:
    """A bit of everything the handlers tell apart: TCP's flags both ways and families, UDP, SCTP, ICMP of both
    versions, replies, drops (Cilium's and the kernel's), policy verdicts, from and to the world."""
    egress = {"subtype": names.TRACE_FROM_LXC, "ep_id": 1001, "ifindex": 11}
    return batch_of(
        record(tcp4(flags=SYN), flags=KNOWN, **egress),
        record(tcp4(flags=SYN), flags=KNOWN),
        record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK), flags=REPLY),
        record(tcp4(flags=ACK), flags=KNOWN),
        record(tcp4(flags=FIN | ACK), flags=KNOWN),
        record(tcp4(SERVER_V4, CLIENT_V4, 80, 40000, RST | ACK), flags=REPLY),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40001, 443, SYN)), 0x86DD), flags=KNOWN),
        record(udp4(), flags=KNOWN, **egress),
        record(udp4(DNS_V4, CLIENT_V4, 53, 40000), flags=REPLY),
        record(ether(ipv4(CLIENT_V4, SERVER_V4, 132, sctp(5000, 6000))), flags=KNOWN),
        record(ether(ipv4(CLIENT_V4, SERVER_V4, 1, icmp4(8))), flags=KNOWN),
        record(ether(ipv4(SERVER_V4, CLIENT_V4, 1, icmp4(0))), flags=REPLY),
        record(ether(ipv4(SERVER_V4, CLIENT_V4, 1, icmp4(3, 3)))),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(128)), 0x86DD), flags=KNOWN),
        record(ether(ipv6(CLIENT_V6, SERVER_V6, 58, icmp6(135)), 0x86DD)),
        record(tcp4(WORLD_V4, SERVER_V4, 50000, 80), subtype=names.TRACE_FROM_NETWORK, ep_id=0, ifindex=2),
        record(tcp4(SERVER_V4, WORLD_V4, 41000, 443), flags=KNOWN, subtype=names.TRACE_TO_NETWORK, ep_id=0, ifindex=2),
        record(tcp4(SERVER_V4, WORLD_V4, 41000, 443, ACK), flags=KNOWN, **{**egress, "ep_id": 1002, "ifindex": 12}),
        record(udp4(SERVER_V4, WORLD_V4, 41000, 53), flags=REPLY, subtype=names.TRACE_TO_NETWORK, ep_id=0, ifindex=2),
        record(
            tcp4(flags=SYN),
            type=names.EVENT_DROP,
            subtype=names.DROP_POLICY_DENIED,
            verdict=names.VERDICT_DROPPED,
            drop_reason=names.DROP_POLICY_DENIED,
        ),
        record(
            tcp4(flags=SYN),
            type=names.EVENT_POLICY_VERDICT,
            subtype=0,
            verdict=names.VERDICT_DROPPED,
            policy_flags=1 | (names.MATCH_NONE << 3),
        ),
        record(
            tcp4(flags=SYN),
            type=names.EVENT_POLICY_VERDICT,
            subtype=0,
            verdict=names.VERDICT_FORWARDED,
            policy_flags=1 | (names.MATCH_L3_L4 << 3),
        ),
        record(
            udp4(CLIENT_V4, SERVER_V4, 40000, 9),
            type=names.EVENT_DROP,
            verdict=names.VERDICT_DROPPED,
            drop_reason=3,
            flags=events.F_KERNEL_DROP,
            ep_id=0,
        ),
        record(
            tcp4(flags=SYN),
            type=names.EVENT_DROP,
            verdict=names.VERDICT_DROPPED,
            drop_reason=0xFFFF_FFF0,
            flags=events.F_KERNEL_DROP,
        ),
        record(ether(b"\x00" * 28, 0x0806)),
    )


def counted(records: np.ndarray, metrics: str = ALL) -> tuple[CollectorRegistry, MetricsSubscriber]:
    registry = CollectorRegistry()
    registry_of = lab_registry()
    sources = Sources(lambda: registry_of.snapshot, kernel_reasons=KERNEL_REASONS)
    subscriber = MetricsSubscriber(make_handlers(metrics, registry, overflow_counter(registry)), sources)
    half = len(records) // 2
    subscriber(records[:half])  # two batches: counts add up across batches
    subscriber(records[half:])
    return registry, subscriber


def families(registry: CollectorRegistry) -> list[object]:
    return list(text_string_to_metric_families(generate_latest(registry).decode()))


def test_counts_equal_hubble_handlers_over_decoded_flows() -> None:
    records = mixed_batch()
    decoder = FlowDecoder("node1", lab_registry(), b"i", KERNEL_REASONS)
    flows = [decoder.decode(records[i], i) for i in range(len(records))]
    registry, _ = counted(records)
    assert scraped(families(registry)) == reference(flows)


def test_exact_values_of_the_labels_hubble_gives() -> None:
    counts = scraped(families(counted(mixed_batch())[0]))
    assert counts[key("hubble_drop_total", reason="POLICY_DENIED", protocol="TCP")] == 1
    assert counts[key("hubble_drop_total", reason="NO_SOCKET", protocol="UDP")] == 1
    assert counts[key("hubble_drop_total", reason=str(0xFFFF_FFF0), protocol="TCP")] == 1
    assert counts[key("hubble_tcp_flags_total", flag="SYN", family="IPv4")] == 5  # the policy verdict too
    assert counts[key("hubble_tcp_flags_total", flag="SYN-ACK", family="IPv4")] == 1
    assert counts[key("hubble_tcp_flags_total", flag="SYN", family="IPv6")] == 1
    assert counts[key("hubble_tcp_flags_total", flag="RST", family="IPv4")] == 1
    assert counts[key("hubble_icmp_total", family="IPv4", type="DestinationUnreachable(Port)")] == 1
    assert counts[key("hubble_icmp_total", family="IPv6", type="NeighborSolicitation")] == 1
    assert counts[key("hubble_port_distribution_total", protocol="UDP", port="53")] == 1
    assert counts[key("hubble_policy_verdicts_total", direction="ingress", match="none", action="dropped")] == 1
    assert counts[key("hubble_policy_verdicts_total", direction="ingress", match="L3-L4", action="forwarded")] == 1
    flows = key(
        "hubble_flows_processed_total", protocol="TCP", type="Trace", subtype="to-endpoint", verdict="FORWARDED"
    )
    assert counts[flows] == 6
    assert counts[key("hubble_flows_to_world_total", protocol="TCP", verdict="FORWARDED")] == 2


def test_flows_to_world_options() -> None:
    counts = scraped(families(counted(mixed_batch(), "flows-to-world:syn-only;port;any-drop")[0]))
    assert counts == {key("hubble_flows_to_world_total", protocol="TCP", verdict="FORWARDED", port="443"): 1}


def test_context_labels_with_fallback() -> None:
    records = batch_of(
        record(tcp4(flags=SYN), flags=KNOWN),
        record(tcp4(WORLD_V4, SERVER_V4, 50000, 80), flags=KNOWN),
    )
    registry, _ = counted(
        records,
        "flow:sourceContext=pod|ip;destinationContext=namespace,"
        "tcp:sourceContext=identity;labelsContext=source_app,destination_pod,traffic_direction",
    )
    found = {
        (s.name, tuple(sorted(s.labels.items())))
        for f in families(registry)
        for s in f.samples  # type: ignore[attr-defined]
        if s.name in ("hubble_flows_processed_total", "hubble_tcp_flags_total") and s.value
    }
    sources = {dict(labels)["source"] for name, labels in found if name == "hubble_flows_processed_total"}
    assert sources == {"default/client-7d9f", WORLD_V4}
    destinations = {dict(labels)["destination"] for name, labels in found if name == "hubble_flows_processed_total"}
    assert destinations == {SERVER.namespace}
    tcp_labels = [dict(labels) for name, labels in found if name == "hubble_tcp_flags_total"]
    client = next(labels for labels in tcp_labels if labels["source_app"] == "client")
    assert client["source"] == "k8s:app=client" or client["source"].startswith("k8s:")
    assert client["destination_pod"] == SERVER.pod
    assert client["traffic_direction"] == "ingress"
    world = next(labels for labels in tcp_labels if labels["source_app"] == "")
    assert world["source"] == "reserved:world"


def test_label_sets_beyond_the_bound_are_counted_as_overflow(caplog: pytest.LogCaptureFixture) -> None:
    records = batch_of(*(record(tcp4(sport=40000 + i, dport=1000 + i), flags=KNOWN) for i in range(30)))
    registry = CollectorRegistry()
    overflow = overflow_counter(registry)
    registry_of = lab_registry()
    handlers = make_handlers("port-distribution", registry, overflow, limit=10)
    MetricsSubscriber(handlers, Sources(lambda: registry_of.snapshot))(records)
    counts = scraped(families(registry), prefix="")
    assert sum(n for (name, _), n in counts.items() if name == "hubble_port_distribution_total") == 10
    assert counts[key("flowscope_metrics_label_sets_overflow_total", metric="hubble_port_distribution_total")] == 20
    assert sum("reached 10 label sets" in r.message for r in caplog.records) == 1


def test_ingested_events_by_source_and_type() -> None:
    _, subscriber = counted(mixed_batch(), "flow")
    ingested = subscriber.ingested.snapshot()
    assert ingested[("kernel-drops", "drop")] == 2
    assert ingested[("datapath", "drop")] == 1
    assert ingested[("datapath", "policy-verdict")] == 2
    assert sum(ingested.values()) == len(mixed_batch())


class Numbers(Sequence[str]):
    """The names "0", "1", ... of `size` codes, without making them all."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return str(index)


@pytest.mark.parametrize("size", [3, 70_000, 1 << 31])  # bincount, one-dimensional unique, structured unique
def test_distinct_rows_whatever_the_number_of_label_sets(size: int) -> None:
    rng = np.random.default_rng(7)
    codes = [rng.integers(0, 3, 500), rng.integers(0, size, 500), rng.integers(0, size, 500)]
    columns = [Column(c, Numbers(max(3, size))) for c in codes]
    expected = Counter(zip(*(c.tolist() for c in codes), strict=True))
    assert dict(distinct_rows(columns)) == expected


def test_ip_context_writes_both_families_as_the_flow_does() -> None:
    records = batch_of(
        record(tcp4("93.184.0.0", SERVER_V4, 50000, 80), flags=KNOWN),  # trailing zero bytes in the address
        record(ether(ipv6(CLIENT_V6, "fd00::", 6, tcp(40001, 443, SYN)), 0x86DD), flags=KNOWN),
        record(ether(b"\x00" * 28, 0x0806)),  # no IP: ""
    )
    registry, _ = counted(records, "flow:sourceContext=ip;destinationContext=ip")
    pairs = {
        (s.labels["source"], s.labels["destination"])
        for f in families(registry)
        for s in f.samples  # type: ignore[attr-defined]
        if s.name == "hubble_flows_processed_total"
    }
    assert pairs == {("93.184.0.0", SERVER_V4), (CLIENT_V6, "fd00::"), ("", "")}


def link_local_batch() -> np.ndarray:
    """Sides whose address nobody owns, named by the datapath's identity: the client's router solicitation to
    ff02::2 (world on the other side) and a neighbour advertisement to the server's fe80::."""
    from_client = {"subtype": names.TRACE_FROM_LXC, "ep_id": 1001, "ifindex": 11}
    return batch_of(
        record(
            ether(ipv6("fe80::11", "ff02::2", 58, icmp6(133)), 0x86DD),
            flags=KNOWN,
            src_identity=CLIENT.identity,
            dst_identity=IDENTITY_WORLD,
            **from_client,
        ),
        record(ether(ipv6("fe80::1", "fe80::12", 58, icmp6(136)), 0x86DD), flags=KNOWN, dst_identity=SERVER.identity),
    )


def test_link_local_sides_are_counted_under_the_pod_their_identity_names() -> None:
    records = link_local_batch()
    decoder = FlowDecoder("node1", lab_registry(), b"i", KERNEL_REASONS)
    assert scraped(families(counted(records)[0])) == reference([decoder.decode(r, i) for i, r in enumerate(records)])
    registry, _ = counted(records, "flow:sourceContext=namespace|ip;destinationContext=app|reserved-identity")
    labels = {
        (dict(s.labels)["source"], dict(s.labels)["destination"])
        for f in families(registry)
        for s in f.samples  # type: ignore[attr-defined]
        if s.name == "hubble_flows_processed_total" and s.value
    }
    assert labels == {("default", "reserved:world"), ("fe80::1", "server")}
