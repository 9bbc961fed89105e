"""`flowscope top`'s L7 view: DNS and HTTP flows, built as the agent's decoder builds them (Type L7, event type
129, Hubble's Layer7 with latency_ns on responses), served by a real gRPC server, counted into L7 rows, rendered,
and switched to with the `v` key in a real terminal."""

from __future__ import annotations

import io
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import cli_samples
import grpc
import pytest
import top_samples
from cli_fake_server import FakeServer
from rich.console import Console
from top_terminal import Terminal

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.main import build_parser
from flowscope.cli.top import render
from flowscope.cli.top.controls import Controls
from flowscope.cli.top.livefilter import LiveFilter
from flowscope.cli.top.state import FlowTable
from flowscope.lab import Lab

NOW = 1_800_000_000.0
SERVER = "unix:///run/flowscope/hubble.sock"
CLIENT = ("10.0.1.5", cli_samples.pod("default", "client", 12345))
COREDNS = ("10.0.0.10", cli_samples.pod("kube-system", "coredns", 5678))
WEB = ("10.0.2.7", cli_samples.pod("web", "web", 23456))


def l7_flow(
    source: tuple[str, flow_pb2.Endpoint],
    destination: tuple[str, flow_pb2.Endpoint],
    ports: tuple[int, int],
    layer7: flow_pb2.Layer7,
    summary: str,
    udp: bool = False,
) -> flow_pb2.Flow:
    """An L7 flow as observer/parser/decoder.py makes one from a type-129 record: the packet's L3/L4 and
    endpoints, event type 129 without an observation point, forwarded, the Layer7 message and its summary."""
    l4 = flow_pb2.UDP(source_port=ports[0], destination_port=ports[1])
    return flow_pb2.Flow(
        node_name="node-1",
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source=source[0], destination=destination[0], ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=l4)
        if udp
        else flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=ports[0], destination_port=ports[1])),
        source=source[1],
        destination=destination[1],
        Type=flow_pb2.L7,
        event_type=flow_pb2.CiliumEventType(type=129, sub_type=0),
        l7=layer7,
        Summary=summary,
    )


def dns_query(name: str, qtype: str = "A", port: int = 40000) -> flow_pb2.Flow:
    layer7 = flow_pb2.Layer7(type=flow_pb2.REQUEST, dns=flow_pb2.DNS(query=name, qtypes=[qtype]))
    return l7_flow(CLIENT, COREDNS, (port, 53), layer7, f"DNS Query {name} {qtype}", udp=True)


def dns_answer(name: str, rcode: int, latency_ms: float, qtype: str = "A", port: int = 40000) -> flow_pb2.Flow:
    dns = flow_pb2.DNS(query=name, qtypes=[qtype], rcode=rcode, ips=["10.200.1.12"] if rcode == 0 else [], ttl=30)
    layer7 = flow_pb2.Layer7(type=flow_pb2.RESPONSE, latency_ns=int(latency_ms * 1e6), dns=dns)
    return l7_flow(COREDNS, CLIENT, (53, port), layer7, f"DNS Answer TTL: 30 (Proxy {name} {qtype})", udp=True)


def http_request(method: str, url: str, port: int = 41000) -> flow_pb2.Flow:
    http = flow_pb2.HTTP(method=method, url=url, protocol="HTTP/1.1")
    layer7 = flow_pb2.Layer7(type=flow_pb2.REQUEST, http=http)
    return l7_flow(CLIENT, WEB, (port, 80), layer7, f"HTTP/1.1 {method} {url}")


def http_response(method: str, url: str, code: int, latency_ms: float, port: int = 41000) -> flow_pb2.Flow:
    http = flow_pb2.HTTP(code=code, method=method, url=url, protocol="HTTP/1.1")
    layer7 = flow_pb2.Layer7(type=flow_pb2.RESPONSE, latency_ns=int(latency_ms * 1e6), http=http)
    return l7_flow(WEB, CLIENT, (80, port), layer7, f"HTTP/1.1 {code} {latency_ms:.0f}ms ({method} {url})")


def exchange() -> list[flow_pb2.Flow]:
    """What a client did in one second: DNS A (twice) and AAAA for one name, an NXDOMAIN, three HTTP pages
    (200 twice on one keep-alive connection, 404, 500), a request still unanswered, and an L3/L4 flow."""
    return [
        dns_query("web.web.svc.lab.", port=40000),
        dns_answer("web.web.svc.lab.", 0, 2.0, port=40000),
        dns_query("web.web.svc.lab.", port=40001),
        dns_answer("web.web.svc.lab.", 0, 4.0, port=40001),
        dns_query("web.web.svc.lab.", "AAAA"),
        dns_answer("web.web.svc.lab.", 0, 3.0, "AAAA"),
        dns_query("nope.web.svc.lab."),
        dns_answer("nope.web.svc.lab.", 3, 1.0),
        http_request("GET", "http://web.web.svc.lab/"),
        http_response("GET", "http://web.web.svc.lab/", 200, 10.0),
        http_request("GET", "http://web.web.svc.lab/?HUBBLE_REDACTED"),  # a redacted query: the same path
        http_response("GET", "http://web.web.svc.lab/?HUBBLE_REDACTED", 200, 30.0),
        http_request("GET", "/status/404", port=41001),
        http_response("GET", "/status/404", 404, 5.0, port=41001),
        http_request("POST", "http://web.web.svc.lab/status/500", port=41002),
        http_response("POST", "http://web.web.svc.lab/status/500", 500, 200.0, port=41002),
        http_request("GET", "http://web.web.svc.lab/slow", port=41003),
        top_samples.connection("client", "server", 9000),
    ]


def served(flows: list[flow_pb2.Flow], server: FakeServer) -> FlowTable:
    """The flows through a real Observer server, read back by a real client into top's table."""
    server.observer.flows = [top_samples.response(flow, NOW - 1 + index / 100) for index, flow in enumerate(flows)]
    table = FlowTable(clock=lambda: NOW)
    with grpc.insecure_channel(server.target) as channel:
        for response in observer_pb2_grpc.ObserverStub(channel).GetFlows(observer_pb2.GetFlowsRequest()):
            table.add(response)
    return table


def controls(*keys: str) -> Controls:
    handled = Controls("", LiveFilter(build_parser().parse_args(["top"])).error)
    for key in keys:
        handled.handle(key)
    return handled


def screen(table: FlowTable, keys: Controls, width: int = 160, height: int = 20) -> list[str]:
    console = Console(file=io.StringIO(), record=True, width=width, height=height, color_system=None)
    keys.page = render.visible_rows(height)
    snapshot, order = keys.view(table.snapshot)
    console.print(render.frame(snapshot, order, keys, SERVER, width, height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_l7_flows_make_rows_per_client_server_and_question(server: FakeServer) -> None:
    snapshot = served(exchange(), server).snapshot()
    assert [key.destination for key in snapshot.keys] == ["default/server"]  # L7 flows stay out of connections
    assert snapshot.flows == 18 and snapshot.l7.messages == 17
    rows = {(key.kind, key.request): row for row, key in enumerate(snapshot.l7.keys)}
    assert list(rows) == [
        ("DNS", "web.web.svc.lab. A"),
        ("DNS", "web.web.svc.lab. AAAA"),
        ("DNS", "nope.web.svc.lab. A"),
        ("HTTP", "GET /"),
        ("HTTP", "GET /status/404"),
        ("HTTP", "POST /status/500"),
        ("HTTP", "GET /slow"),
    ]
    dns = snapshot.l7.keys[rows["DNS", "web.web.svc.lab. A"]]
    assert (dns.source, dns.destination, dns.protocol) == ("default/client", "kube-system/coredns", "UDP/53")
    http = snapshot.l7.keys[rows["HTTP", "GET /"]]
    assert (http.source, http.destination, http.protocol) == ("default/client", "web/web", "TCP/80")

    def numbers(kind: str, request: str) -> tuple[int, int, int, list[int]]:
        row = rows[kind, request]
        l7 = snapshot.l7
        return int(l7.total[row]), int(l7.responses[row]), int(l7.errors[row]), l7.status[row].tolist()

    assert numbers("DNS", "web.web.svc.lab. A") == (2, 2, 0, [2, 0, 0, 0, 0, 0, 0])
    assert numbers("DNS", "nope.web.svc.lab. A") == (1, 1, 1, [0, 0, 0, 1, 0, 0, 0])  # NXDOMAIN
    assert numbers("HTTP", "GET /") == (2, 2, 0, [0, 0, 2, 0, 0, 0, 0])
    assert numbers("HTTP", "GET /status/404") == (1, 1, 1, [0, 0, 0, 0, 1, 0, 0])
    assert numbers("HTTP", "POST /status/500") == (1, 1, 1, [0, 0, 0, 0, 0, 1, 0])
    assert numbers("HTTP", "GET /slow") == (1, 0, 0, [0] * 7)
    # Percentiles come from histogram buckets of a quarter of a doubling: within 10% of the latencies.
    p50, p95 = snapshot.l7.p50, snapshot.l7.p95
    assert p50[rows["DNS", "web.web.svc.lab. A"]] == pytest.approx(2e6, rel=0.1)
    assert p95[rows["DNS", "web.web.svc.lab. A"]] == pytest.approx(4e6, rel=0.1)
    assert p95[rows["HTTP", "POST /status/500"]] == pytest.approx(200e6, rel=0.1)
    assert str(p50[rows["HTTP", "GET /slow"]]) == "nan"
    assert snapshot.l7.rates[0][rows["HTTP", "GET /"]] == pytest.approx(1.0)  # 2 requests in the last 2 s


def test_the_l7_view_shows_names_requests_status_and_latency(server: FakeServer) -> None:
    table = served(exchange(), server)
    connections = "\n".join(screen(table, controls()))
    assert "TCP/9000" in connections and "coredns" not in connections
    lines = screen(table, controls("v"))
    assert lines[0].startswith("flowscope top  L7 view (DNS, HTTP)  sort: rate 10s")
    titles = lines[2].split()
    assert titles[:6] == ["SOURCE", "DESTINATION", "PROTO", "L7", "REQUEST", "STATUS"]
    assert titles[-5:] == ["REQS", "ERR", "P50", "P95", "SEEN"]
    text = "\n".join(lines)
    for expected in (
        "kube-system/coredns UDP/53   DNS  web.web.svc.lab. A ",
        "NOERROR 2",
        "nope.web.svc.lab. A",
        "NXDOMAIN 1",
        "web/web",
        "TCP/80   HTTP GET /status/404",
        "4xx 1",
        "5xx 1",
        "2xx 2",
        "no answer",
        "requests/s 4.5   answers 8   errors 3",
        "L7 messages 17 of 18 flows   rows 7 (showing 1-7)",
        "v connections",
        "s slowest p95",
    ):
        assert expected in text, f"{expected!r} not in\n{text}"
    row = next(line for line in lines if "POST /status/500" in line)
    assert row.split()[-3:] == ["202ms", "202ms", "now"]  # P50, P95 (within 10% of 200 ms), SEEN


def test_errors_and_slowest_sorts(server: FakeServer) -> None:
    table = served(exchange(), server)

    def requests(keys: Controls) -> list[str]:
        snapshot, order = keys.view(table.snapshot)
        return [snapshot.l7.keys[row].request for row in order]

    assert requests(controls("v", "d"))[:3] == ["nope.web.svc.lab. A", "GET /status/404", "POST /status/500"]
    assert requests(controls("v", "s"))[:3] == ["POST /status/500", "GET /", "GET /status/404"]
    assert requests(controls("v", "s"))[-1] == "GET /slow"  # no answer, no latency: last
    marked = screen(table, controls("v", "s"))[2]
    assert "P95▼" in marked and "ERR▼" in screen(table, controls("v", "d"))[2]
    assert controls("v", "s").sort_label == "slowest p95" and controls("v", "d").sort_label == "errors"
    back = controls("v", "s", "v")  # latency means nothing for connections: back to rate
    assert (back.shown, back.sort) == ("flows", "rate")
    assert controls("s").sort == "rate"


def test_latency_percentiles_follow_new_answers_and_an_empty_view_says_why() -> None:
    table = FlowTable(clock=lambda: NOW)
    keys = controls("v")
    lines = screen(table, keys, height=12)
    assert len(lines) == 12 and lines[3].startswith("no L7 flows yet: agents report DNS and HTTP")
    table.add_flow(top_samples.at(http_response("GET", "/", 200, 1.0), NOW))
    assert table.snapshot().l7.p95[0] == pytest.approx(1e6, rel=0.1)
    assert screen(table, controls(), height=12)[3] == "no connections; 1 L7 rows: v shows them"  # e.g. with -t l7
    for _ in range(10):
        table.add_flow(top_samples.at(http_response("GET", "http://web/?HUBBLE_REDACTED#top", 200, 50.0), NOW))
    snapshot = table.snapshot()  # the row was answered since the last snapshot: its percentiles moved
    assert len(snapshot.l7) == 1 and snapshot.l7.p95[0] == pytest.approx(50e6, rel=0.1)
    assert snapshot.l7.p50[0] == pytest.approx(50e6, rel=0.1)


def test_a_flow_whose_l7_entry_was_evicted_or_unpaired_still_counts() -> None:
    table = FlowTable(clock=lambda: NOW)
    evicted = dns_query("web.web.svc.lab.")
    evicted.ClearField("l7")
    table.add_flow(top_samples.at(evicted, NOW))
    unpaired = http_response("", "", 502, 0.0)  # an answer whose request the agent never saw
    table.add_flow(top_samples.at(unpaired, NOW))
    snapshot = table.snapshot().l7
    key = snapshot.keys[0]
    assert (key.kind, key.request, key.protocol, key.destination) == ("L7", "?", "UDP/53", "kube-system/coredns")
    assert (snapshot.keys[1].kind, snapshot.keys[1].request, snapshot.keys[1].source) == ("HTTP", "?", "default/client")
    assert snapshot.status[1].tolist() == [0, 0, 0, 0, 0, 1, 0] and str(snapshot.p95[1]) == "nan"


def test_an_l7_frame_of_10000_rows_is_cheap() -> None:
    """The frame costs what a connections frame does: numpy over the rows, text for the visible ones only."""
    table = FlowTable(clock=lambda: NOW)
    for row in range(10_000):
        port = 40000 + row % 20000
        when = NOW - row % 40
        table.add_flow(top_samples.at(http_request("GET", f"/item/{row}", port), when))
        table.add_flow(top_samples.at(http_response("GET", f"/item/{row}", 200 + row % 4 * 100, row % 97, port), when))
    keys = controls("v")
    console = Console(file=io.StringIO(), width=160, height=50, force_terminal=True, color_system="truecolor")
    keys.page = render.visible_rows(50)
    timings = []
    for _ in range(10):
        start = time.perf_counter()
        snapshot, order = keys.view(table.snapshot)
        console.print(render.frame(snapshot, order, keys, SERVER, 160, 50))
        timings.append(time.perf_counter() - start)
        console.file = io.StringIO()
    assert len(snapshot.l7) == 10_000
    assert statistics.median(timings) < 0.1, timings  # 4-10 frames a second must leave time for the rest


class Feeder:
    """Pushes the exchange stamped now to the fake server every 50 ms, once a client follows."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        self.server.observer.following.wait(30)
        while not self.stop.is_set():
            now = time.time()
            for flow in exchange():
                self.server.push(top_samples.response(flow, now))
            time.sleep(0.05)


@pytest.fixture
def feeding(server: FakeServer) -> Iterator[Feeder]:
    feeder = Feeder(server)
    yield feeder
    feeder.stop.set()
    feeder.thread.join(5)


def test_the_v_key_switches_to_the_l7_view_and_back(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", server.target)
    term.wait_for(lambda text: "TCP/9000" in text and "v L7 view" in text, "the connections")
    term.type("v")
    screen = term.wait_for(lambda text: "L7 view (DNS, HTTP)" in text and "5xx" in text, "the L7 view")
    assert "POST /status/500" in screen and "NXDOMAIN" in screen and "TCP/9000" not in screen
    term.type("s")
    term.wait_for(lambda text: "sort: slowest p95" in text and "P95▼" in text, "the slowest sort")
    term.type("v")
    term.wait_for(lambda text: "TCP/9000" in text and "L7 view (" not in text, "the connections again")
    term.type("q")
    assert term.exit_code() == 0
    assert term.restored()


def test_top_l7_starts_in_the_l7_view(
    server: FakeServer, feeding: Feeder, terminal_for: Callable[..., Terminal]
) -> None:
    term = terminal_for("--server", server.target, "--l7", cols=100)
    screen = term.wait_for(lambda text: "L7 view" in text and "GET /status/404" in text, "the L7 view")
    assert "REQUEST" in screen and "P95" in screen
    term.type("q")
    assert term.exit_code() == 0


@pytest.mark.bpf
def test_a_real_agents_dns_and_http_in_the_l7_view(terminal_for: Callable[..., Terminal]) -> None:
    """The lab's client asks its DNS server and fetches a missing page; the agent's L7 flows, decoded by the
    real datapath and parser, appear in `top --l7` as one DNS row and one HTTP row, answered, with latency."""
    with Lab(f"t{os.getpid()}-topl7") as lab:
        lab.up(traffic=False, agent=True)
        dns, web = lab.pod("coredns"), lab.pod("web2")
        assert lab.exec("client", ["dig", "+time=2", "+tries=1", "+short", f"@{dns.ipv4}", "web.web.svc.lab.", "A"])
        curl = ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--max-time", "3"]
        assert lab.exec("client", [*curl, f"http://{web.ipv4}/status/404"], check=False).stdout == "404"
        term = terminal_for("--server", f"unix://{lab.agent_socket('node1')}", "--l7", cols=200)
        screen = term.wait_for(
            lambda text: "web.web.svc.lab. A" in text and "GET /status/404" in text and "4xx 1" in text,
            "the client's DNS question and HTTP request, answered",
            timeout=30,
        )
        dns_row = next(line for line in screen.splitlines() if "web.web.svc.lab. A" in line)
        http_row = next(line for line in screen.splitlines() if "GET /status/404" in line)
        assert dns_row.startswith("default/client") and "UDP/53" in dns_row and "NOERROR 1" in dns_row, screen
        assert http_row.startswith("default/client") and "web/web2" in http_row and "TCP/80" in http_row, screen
        for row in (dns_row, http_row):
            p50, p95 = row.split()[-3:-1]
            assert p50.endswith(("µs", "ms", "s")) and p95.endswith(("µs", "ms", "s")), row
        term.type("q")
        assert term.exit_code() == 0
