"""L7 flows in every text format, line for line as hubble's printer prints them (hubble pkg/printer).

The flows are shaped as the agent's decoder makes them from an L7 record: Type L7, event type 129 (Cilium's
MessageTypeAccessLog) with sub-type 0, no observation point, FORWARDED, `is_reply` false on a request and true
on a response (whose packet goes from the server back to the client, so the line swaps the ends), `l7` and the
Summary the agent wrote. Hubble's TYPE column is `dns-request proxy`, `dns-response proxy` (DNS carries its
observation source), `http-request`, `http-response`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from google.protobuf.json_format import MessageToJson
from google.protobuf.wrappers_pb2 import BoolValue

import flowscope.cli.observe
from flowscope.api.flow import flow_pb2 as pb
from flowscope.api.observer import observer_pb2
from flowscope.cli.main import build_parser
from flowscope.cli.observe.offline import responses
from flowscope.cli.observe.request import FIELD_MASK, build_request
from flowscope.cli.printer import PrintOptions, Sink, make_printer
from flowscope.common import names

T = "Jan  1 00:00:00.123"
CLIENT = pb.Endpoint(namespace="default", pod_name="client-7d9f", identity=12345)
COREDNS = pb.Endpoint(namespace="kube-system", pod_name="coredns-abc", identity=5678)
WEB = pb.Endpoint(namespace="web", pod_name="web-5c4b", identity=23456)
WORLD = pb.Endpoint(identity=2)
CLIENT_IP, COREDNS_IP, WEB_IP, WORLD_IP = "10.200.1.11", "10.200.2.21", "10.200.1.12", "93.184.216.34"


def l7_flow(
    layer7: pb.Layer7,
    summary: str,
    ends: tuple[tuple[pb.Endpoint, str, int], tuple[pb.Endpoint, str, int]],
    udp: bool = False,
) -> pb.Flow:
    """An L7 flow from the decoder: the packet's ends as (endpoint, address, port), source first."""
    (source, source_ip, source_port), (destination, destination_ip, destination_port) = ends
    ports = {"source_port": source_port, "destination_port": destination_port}
    flow = pb.Flow(
        verdict=pb.FORWARDED,
        IP=pb.IP(source=source_ip, destination=destination_ip, ipVersion=pb.IPv4),
        l4=pb.Layer4(UDP=pb.UDP(**ports)) if udp else pb.Layer4(TCP=pb.TCP(**ports)),
        source=source,
        destination=destination,
        Type=pb.L7,
        node_name="node1",
        event_type=pb.CiliumEventType(type=names.EVENT_TYPES["l7"], sub_type=0),
        is_reply=BoolValue(value=layer7.type == pb.RESPONSE),
        l7=layer7,
        Summary=summary,
    )
    flow.time.FromSeconds(1704067200)
    flow.time.nanos = 123456789
    return flow


def dns_query() -> pb.Flow:
    layer7 = pb.Layer7(type=pb.REQUEST, dns=pb.DNS(query="web.web.svc.lab.", qtypes=["A"], observation_source="proxy"))
    ends = ((CLIENT, CLIENT_IP, 40000), (COREDNS, COREDNS_IP, 53))
    return l7_flow(layer7, "DNS Query web.web.svc.lab. A", ends, udp=True)


def dns_answer(summary: str = 'DNS Answer "10.200.1.12" TTL: 30 (Proxy web.web.svc.lab. A)') -> pb.Flow:
    dns = pb.DNS(
        query="web.web.svc.lab.",
        qtypes=["A"],
        rrtypes=["A"],
        ips=["10.200.1.12"],
        ttl=30,
        observation_source="proxy",
    )
    layer7 = pb.Layer7(type=pb.RESPONSE, latency_ns=412_000, dns=dns)
    return l7_flow(layer7, summary, ((COREDNS, COREDNS_IP, 53), (CLIENT, CLIENT_IP, 40000)), udp=True)


def http_request() -> pb.Flow:
    http = pb.HTTP(method="GET", url="http://web.web.svc.lab/status/404", protocol="HTTP/1.1")
    ends = ((CLIENT, CLIENT_IP, 41000), (WEB, WEB_IP, 80))
    return l7_flow(pb.Layer7(type=pb.REQUEST, http=http), "HTTP/1.1 GET http://web.web.svc.lab/status/404", ends)


def http_response(summary: str = "HTTP/1.1 404 3ms (GET http://web.web.svc.lab/status/404)") -> pb.Flow:
    http = pb.HTTP(code=404, method="GET", url="http://web.web.svc.lab/status/404", protocol="HTTP/1.1")
    layer7 = pb.Layer7(type=pb.RESPONSE, latency_ns=3_400_000, http=http)
    return l7_flow(layer7, summary, ((WEB, WEB_IP, 80), (CLIENT, CLIENT_IP, 41000)))


def render(output: str, *flows: pb.Flow, **options: object) -> str:
    out, err = io.StringIO(), io.StringIO()
    printer = make_printer(output, Sink(out), Sink(err), PrintOptions(**options))  # type: ignore[arg-type]
    for flow in flows:
        printer.write(observer_pb2.GetFlowsResponse(flow=flow, node_name=flow.node_name, time=flow.time))
    printer.close()
    assert err.getvalue() == ""
    return out.getvalue()


def compact(flow: pb.Flow, **options: object) -> str:
    return render("compact", flow, **options).rstrip("\n")


def test_dns_query_and_answer() -> None:
    assert compact(dns_query()) == (
        f"{T}: default/client-7d9f:40000 (ID:12345) -> kube-system/coredns-abc:53 (ID:5678)"
        " dns-request proxy FORWARDED (DNS Query web.web.svc.lab. A)"
    )
    assert compact(dns_answer()) == (
        f"{T}: default/client-7d9f:40000 (ID:12345) <- kube-system/coredns-abc:53 (ID:5678)"
        ' dns-response proxy FORWARDED (DNS Answer "10.200.1.12" TTL: 30 (Proxy web.web.svc.lab. A))'
    )


def test_http_request_and_response() -> None:
    assert compact(http_request(), node_name=True) == (
        f"{T} [node1]: default/client-7d9f:41000 (ID:12345) -> web/web-5c4b:80 (ID:23456)"
        " http-request FORWARDED (HTTP/1.1 GET http://web.web.svc.lab/status/404)"
    )
    assert compact(http_response()) == (
        f"{T}: default/client-7d9f:41000 (ID:12345) <- web/web-5c4b:80 (ID:23456)"
        " http-response FORWARDED (HTTP/1.1 404 3ms (GET http://web.web.svc.lab/status/404))"
    )


def test_an_end_without_pod_or_service_is_named_by_its_dns_names() -> None:
    flow = http_request()
    flow.IP.destination = WORLD_IP
    flow.destination.CopyFrom(WORLD)
    flow.destination_names.extend(["example.com", "www.example.com"])
    assert compact(flow) == (
        f"{T}: default/client-7d9f:41000 (ID:12345) -> example.com,www.example.com:80 (world)"
        " http-request FORWARDED (HTTP/1.1 GET http://web.web.svc.lab/status/404)"
    )
    assert compact(flow, ip_translation=False).split(" -> ")[1].startswith(f"{WORLD_IP}:80 (world)")


def test_summary_made_as_hubble_words_it_when_the_flow_has_none() -> None:
    nxdomain = dns_answer(summary="")
    nxdomain.l7.dns.ClearField("ips")
    nxdomain.l7.dns.rcode = 3
    assert compact(nxdomain).endswith(
        "dns-response proxy FORWARDED (DNS Answer RCode: Non-Existent Domain TTL: 30 (Proxy web.web.svc.lab. A))"
    )
    aliased = dns_answer(summary="")
    aliased.l7.dns.cnames.append("web.web.svc.lab.")
    assert compact(aliased).endswith(
        '(DNS Answer "10.200.1.12" CNAMEs: "web.web.svc.lab." TTL: 30 (Proxy web.web.svc.lab. A))'
    )
    assert compact(http_response(summary="")).endswith(
        "http-response FORWARDED (HTTP/1.1 404 3ms (GET http://web.web.svc.lab/status/404))"
    )


def test_a_message_cut_short_by_the_capture_says_so() -> None:
    flow = http_request()
    flow.flowscope.truncated = True
    assert compact(flow).endswith("(HTTP/1.1 GET http://web.web.svc.lab/status/404; truncated)")


def test_dict() -> None:
    assert render("dict", dns_query(), http_response()) == (
        f"  TIMESTAMP: {T}\n"
        "     SOURCE: default/client-7d9f:40000\n"
        "DESTINATION: kube-system/coredns-abc:53\n"
        "       TYPE: dns-request proxy\n"
        "    VERDICT: FORWARDED\n"
        "    SUMMARY: DNS Query web.web.svc.lab. A\n"
        "------------\n"
        f"  TIMESTAMP: {T}\n"
        "     SOURCE: web/web-5c4b:80\n"
        "DESTINATION: default/client-7d9f:41000\n"
        "       TYPE: http-response\n"
        "    VERDICT: FORWARDED\n"
        "    SUMMARY: HTTP/1.1 404 3ms (GET http://web.web.svc.lab/status/404)\n"
    )


def test_table() -> None:
    lines = render("table", dns_query(), dns_answer()).splitlines()
    header, query, answer = lines
    columns = [header.index(name) for name in ("SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY")]
    assert [query[start:end].strip() for start, end in zip(columns, [*columns[1:], None], strict=True)] == [
        "default/client-7d9f:40000",
        "kube-system/coredns-abc:53",
        "dns-request proxy",
        "FORWARDED",
        "DNS Query web.web.svc.lab. A",
    ]
    assert answer[columns[0] : columns[1]].strip() == "kube-system/coredns-abc:53"  # table keeps the wire order
    assert answer[columns[2] :].startswith("dns-response proxy")


def test_type_l7_asks_for_event_type_129() -> None:
    args = build_parser([flowscope.cli.observe]).parse_args(["observe", "-t", "l7", "--http-status", "5+"])
    request = build_request(args)
    assert list(request.whitelist) == [
        pb.FlowFilter(event_type=[pb.EventTypeFilter(type=129)], http_status_code=["5+"])
    ]


def test_text_formats_ask_for_what_l7_lines_print() -> None:
    assert {"l7", "Summary", "is_reply", "source_names", "destination_names", "flowscope"} <= set(FIELD_MASK)


def test_flows_read_back_from_a_file_are_filtered_by_their_l7_fields(tmp_path: Path) -> None:
    file = tmp_path / "flows.json"
    flows = [dns_query(), dns_answer(), http_request(), http_response()]
    lines = [
        MessageToJson(observer_pb2.GetFlowsResponse(flow=f, node_name="node1", time=f.time), indent=None) for f in flows
    ]
    file.write_text("\n".join(lines) + "\n")

    def summaries(*flags: str) -> list[str]:
        args = build_parser([flowscope.cli.observe]).parse_args(["observe", "--input-file", str(file), *flags])
        return [r.flow.Summary for r in responses(file.read_text().splitlines(), build_request(args))]

    assert summaries("-t", "l7", "--http-status", "4+") == [flows[3].Summary]
    assert summaries("--http-method", "get") == [flows[2].Summary, flows[3].Summary]
    assert summaries("--dns-query", r"^web\.") == [flows[0].Summary, flows[1].Summary]
    assert summaries("--protocol", "dns") == [flows[0].Summary, flows[1].Summary]
    assert json.loads(lines[1])["flow"]["l7"]["dns"]["ips"] == ["10.200.1.12"]
