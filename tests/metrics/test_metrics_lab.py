"""Metrics of a real agent in a lab: after known traffic (a ping, a TCP connection, datagrams a policy denies),
/metrics counts exactly what Hubble's handlers count over the agent's own flows, with the drops and verdicts
the packets met; and a real Prometheus scraping the agent answers a PromQL query with the drop count."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import SERVER_IN_POLICY, TCP_CLIENT, UDP_CLIENT, apply_policy, flows, run_python
from hubble_reference import Key, key, reference, scraped
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import DIRECT, prometheus

from flowscope.lab import Lab, netns
from flowscope.lab.topology import TCP_RR_PORT, UDP_ECHO_PORT

pytestmark = pytest.mark.bpf

METRICS_PORT = 9965  # Hubble's; the agent serves it in its node's namespace, a lab's own
HANDLERS = "flow,drop,tcp,port-distribution,icmp,policy,dns,http"
DENIED = key("hubble_drop_total", reason="POLICY_DENY", protocol="UDP")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-metrics") as lab:
        lab.up(traffic=False, agent=False)
        metrics = ["--metrics-address", f":{METRICS_PORT}", "--metrics", HANDLERS, "--metrics-bpf-stats"]
        lab.start_agents(extra_args=metrics)
        apply_policy(lab, SERVER_IN_POLICY)
        yield lab


TARGET = f"127.0.0.1:{METRICS_PORT}"


def scrape(lab: Lab) -> list[object]:
    """/metrics, read inside the agent's node over loopback: a lab is reached from its own namespaces only, and
    loopback has no observation point, so reading the metrics adds no flows to them."""
    with netns.inside(lab.netns("node1")), DIRECT.open(f"http://{TARGET}/metrics", timeout=5) as reply:
        return list(text_string_to_metric_families(reply.read().decode()))


def settled(lab: Lab, timeout: float = 30.0) -> tuple[Counter[Key], list[object]]:
    """The hubble_* counts once they equal Hubble's handlers over every flow the agent stored, read between two
    equal scrapes (nothing arrived meanwhile); the last scrape's families too."""
    deadline = time.monotonic() + timeout
    while True:
        before = scraped(scrape(lab))
        expected = reference(flows(lab))
        families = scrape(lab)
        after = scraped(families)
        if before == after == expected or time.monotonic() > deadline:
            assert after == expected
            return after, families
        time.sleep(0.3)


def deny(lab: Lab, *sports: int) -> None:
    for sport in sports:
        assert run_python(lab, "web", UDP_CLIENT, lab.pod("server").ipv4, UDP_ECHO_PORT, sport).returncode != 0


def test_metrics_count_what_the_flows_say(lab: Lab) -> None:
    web, server = lab.pod("web"), lab.pod("server")
    deny(lab, 43001, 43002, 43003)
    lab.exec("client", ["ping", "-c", "3", "-i", "0.2", "-W", "2", web.ipv4])
    assert run_python(lab, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, 43010, 2).returncode == 0
    dns = lab.pod("coredns").ipv4
    assert lab.exec("client", ["dig", "+time=2", "+tries=1", "+short", f"@{dns}", "web.web.svc.lab.", "A"]).stdout
    curl = ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--max-time", "3"]
    assert lab.exec("client", [*curl, f"http://{web.ipv4}/status/404"], check=False).stdout == "404"
    counts, families = settled(lab)
    # Each denied datagram: a policy verdict and a drop, both DROPPED (Hubble counts both), at the server.
    assert counts[DENIED] == 6
    assert counts[key("hubble_policy_verdicts_total", direction="ingress", match="L3-L4", action="dropped")] == 3
    # Three echo requests and replies, each seen leaving one pod and entering the other.
    assert counts[key("hubble_icmp_total", family="IPv4", type="EchoRequest")] == 6
    assert counts[key("hubble_icmp_total", family="IPv4", type="EchoReply")] == 6
    assert counts[key("hubble_port_distribution_total", protocol="TCP", port=str(TCP_RR_PORT))] >= 2
    # Two connections (the TCP client's, curl's), each SYN-ACK seen leaving the server and entering the client.
    assert counts[key("hubble_tcp_flags_total", flag="SYN-ACK", family="IPv4")] == 4
    # One DNS question and answer, one HTTP request and response: the L7 flows made of them, as the client's.
    assert counts[key("hubble_dns_queries_total", rcode="", qtypes="A", ips_returned="")] == 1
    assert counts[key("hubble_dns_responses_total", rcode="No Error", qtypes="A", ips_returned="1")] == 1
    assert counts[key("hubble_dns_response_types_total", type="A", qtypes="A")] == 1
    http = {"method": "GET", "protocol": "HTTP/1.1", "reporter": "client"}
    assert counts[key("hubble_http_requests_total", **http)] == 1
    assert counts[key("hubble_http_responses_total", status="404", **http)] == 1
    agent = {s.name: s for f in families for s in f.samples}  # type: ignore[attr-defined]
    ingested = sum(
        s.value
        for f in families
        for s in f.samples  # type: ignore[attr-defined]
        if s.name == "flowscope_events_ingested_total"
    )
    processed = sum(n for (name, _), n in counts.items() if name == "hubble_flows_processed_total")
    assert ingested == processed
    assert agent["flowscope_flow_ring_capacity"].value == 65535
    assert {"flowscope_flow_ring_flows", "flowscope_l7_store_capacity", "flowscope_getflows_streams"} <= set(agent)
    lost = {s.labels["source"] for f in families for s in f.samples if s.name == "hubble_lost_events_total"}  # type: ignore[attr-defined]
    assert lost == {"perf_event_ring_buffer", "observer_events_queue", "hubble_ring_buffer"}
    # BPF statistics held on (--metrics-bpf-stats): the programs that saw the packets counted their runs.
    runs = {
        s.labels["program"]: s.value
        for f in families
        for s in f.samples
        if s.name == "flowscope_bpf_program_runs_total"
    }  # type: ignore[attr-defined]
    assert sum(runs.values()) > 0, runs


def test_prometheus_scrapes_the_drop_count(lab: Lab, tmp_path: Path) -> None:
    before = settled(lab)[0][DENIED]
    with prometheus(tmp_path, [TARGET], lab.netns("node1")) as server:
        deny(lab, 43101, 43102)
        assert settled(lab)[0][DENIED] == before + 4
        query = 'sum(hubble_drop_total{reason="POLICY_DENY", protocol="UDP"})'
        deadline = time.monotonic() + 30
        while (value := server.value(query)) != before + 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert value == before + 4
        [up] = server.query(f'up{{instance="{TARGET}"}}')
        assert up["value"][1] == "1"  # type: ignore[index]
