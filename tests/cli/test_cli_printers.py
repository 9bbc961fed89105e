"""Every output format on hand-built flows: the exact lines a person (or a script) gets."""

from __future__ import annotations

import io
import json

import cli_samples as samples
import pytest

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.printer import PrintOptions, Sink, make_printer
from flowscope.cli.printer.sink import wants_color

T = "Jan  1 00:00:00.123"


def render(output: str, *responses: observer_pb2.GetFlowsResponse, **options: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    printer = make_printer(output, Sink(out), Sink(err), PrintOptions(**options))  # type: ignore[arg-type]
    for response in responses:
        printer.write(response)
    printer.close()
    return out.getvalue(), err.getvalue()


def compact(flow: object, **options: object) -> str:
    out, _ = render("compact", samples.response(flow), **options)  # type: ignore[arg-type]
    return out.rstrip("\n")


# --- compact --------------------------------------------------------------------------------------


def test_tcp() -> None:
    assert compact(samples.tcp_flow()) == (
        f"{T}: default/client:34567 (ID:12345) -> default/server:80 (ID:23456) to-endpoint FORWARDED (TCP Flags: SYN)"
    )


def test_reply_swaps_the_ends_and_the_arrow() -> None:
    assert compact(samples.tcp_reply()) == (
        f"{T}: default/client:34567 (ID:12345) <- default/server:80 (ID:23456) from-endpoint FORWARDED"
        " (TCP Flags: SYN, ACK)"
    )


def test_unknown_direction_and_udp_summary_made_locally() -> None:
    assert compact(samples.udp_dns_flow()) == (
        f"{T}: default/client:53000 (ID:12345) <> kube-system/coredns-x:53 (ID:5678) to-endpoint FORWARDED (UDP)"
    )


def test_icmpv4_to_the_world() -> None:
    assert compact(samples.icmp4_world()) == (
        f"{T}: default/client (ID:12345) -> 1.1.1.1 (world) to-network FORWARDED (ICMPv4 EchoRequest)"
    )


def test_icmpv6_from_the_host() -> None:
    assert (
        compact(samples.icmp6_host()) == f"{T}: fd00::1 (host) -> fd00::5 (ID:300) to-host FORWARDED (ICMPv6 EchoReply)"
    )


def test_ipv6_ports_bracket_the_address() -> None:
    assert compact(samples.tcp6_flow()) == (
        f"{T}: [fd00::5]:40000 (world) -> [fd00::7]:443 (world) to-stack FORWARDED (TCP Flags: ACK, PSH)"
    )


def test_drop_with_a_cilium_reason() -> None:
    assert compact(samples.cilium_drop()) == (
        f"{T}: default/client:34567 (ID:12345) -> default/server:80 (ID:23456) Policy denied DROPPED (TCP Flags: SYN)"
    )


def test_drop_with_a_kernel_reason() -> None:
    assert compact(samples.kernel_drop()) == (
        f"{T}: default/client:40000 (ID:12345) -> default/server:9999 (ID:23456) NO_SOCKET DROPPED (UDP)"
    )


def test_policy_verdicts() -> None:
    denied, allowed = samples.policy_verdict(allowed=False), samples.policy_verdict(allowed=True)
    assert " policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN)" in compact(denied)
    assert " policy-verdict:L3-L4 INGRESS ALLOWED (" in compact(allowed)


def test_an_aggregate_of_one_packet_is_singular() -> None:
    flow = samples.aggregated_flow()
    flow.flowscope.packets, flow.flowscope.bytes = 1, 1
    assert compact(flow).endswith("(TCP Flags: ACK, PSH; 1 packet, 1 byte)")


def test_aggregated_flow_shows_its_counts() -> None:
    assert compact(samples.aggregated_flow()).endswith(
        "to-endpoint FORWARDED (TCP Flags: ACK, PSH; 12 packets, 3,456 bytes)"
    )


def test_node_name_and_time_format() -> None:
    line = compact(samples.tcp_flow(), node_name=True, time_format="RFC3339Nano")
    assert line.startswith("2024-01-01T00:00:00.123456789Z [node-1]: default/client:34567 ")


def test_numeric_output_shows_addresses() -> None:
    line = compact(samples.tcp_flow(), ip_translation=False)
    assert ": 10.0.1.5:34567 (ID:12345) -> 10.0.2.7:80 (ID:23456) " in line


def test_lost_events() -> None:
    out, err = render("compact", samples.lost_event())
    assert out == f"{T} EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 1\n"
    assert err == ""


def test_node_status_goes_to_stderr() -> None:
    out, err = render("compact", samples.node_status())
    assert out == ""
    assert err == f"{T} [relay]: 2 nodes are unavailable: node-2, node-3\n"


def test_informational_node_status_only_with_debug() -> None:
    connected = samples.node_status(relay_pb2.NODE_CONNECTED, ("node-1",))
    assert render("compact", connected) == ("", "")
    assert render("compact", connected, debug=True)[1] == f"{T} [relay]: Receiving flows from 1 nodes: node-1\n"


def test_names_from_the_network_cannot_drive_the_terminal() -> None:
    flow = samples.tcp_flow()
    flow.source.pod_name = "evil\x1b[2J"
    assert "\x1b" not in compact(flow)
    assert "evil\\x1b[2J" in compact(flow)


# --- dict, table, json ----------------------------------------------------------------------------


def test_dict() -> None:
    out, _ = render(
        "dict", samples.response(samples.tcp_flow()), samples.response(samples.kernel_drop()), node_name=True
    )
    assert out == (
        f"  TIMESTAMP: {T}\n"
        "       NODE: node-1\n"
        "     SOURCE: default/client:34567\n"
        "DESTINATION: default/server:80\n"
        "       TYPE: to-endpoint\n"
        "    VERDICT: FORWARDED\n"
        "    SUMMARY: TCP Flags: SYN\n"
        "------------\n"
        f"  TIMESTAMP: {T}\n"
        "       NODE: \n"
        "     SOURCE: default/client:40000\n"
        "DESTINATION: default/server:9999\n"
        "       TYPE: NO_SOCKET\n"
        "    VERDICT: DROPPED\n"
        "    SUMMARY: UDP\n"
    )


def test_table_is_aligned() -> None:
    out, _ = render("table", *(r for r in samples.canned() if r.WhichOneof("response_types") != "node_status"))
    lines = out.splitlines()
    assert lines[0].split() == ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    columns = [lines[0].index(name) for name in ("SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY")]
    assert lines[1][columns[0] :].startswith("default/client:34567")
    assert lines[1][columns[1] :].startswith("default/server:80")
    assert lines[6][columns[2] :].startswith("Policy denied")
    assert lines[7][columns[2] :].startswith("NO_SOCKET")
    assert lines[7][columns[3] :].startswith("DROPPED")
    assert lines[9][columns[2] :].startswith("EVENTS LOST")
    assert lines[9].endswith("CPU(0) - 1")


def test_json_is_one_getflowsresponse_per_line() -> None:
    out, err = render("json", samples.response(samples.kernel_drop()), samples.lost_event(), samples.node_status())
    flow, lost = (json.loads(line) for line in out.splitlines())
    assert flow["node_name"] == "node-1"
    assert flow["time"] == "2024-01-01T00:00:00.123456789Z"
    assert flow["flow"]["verdict"] == "DROPPED"
    assert flow["flow"]["is_reply"] is False
    assert flow["flow"]["IP"]["source"] == "10.0.1.5"
    assert flow["flow"]["l4"]["UDP"]["destination_port"] == 9999
    assert flow["flow"]["flowscope"]["kernel_drop_reason"] == "NO_SOCKET"
    assert lost["lost_events"] == {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "1", "cpu": 0}
    assert json.loads(err)["node_status"]["state_change"] == "NODE_UNAVAILABLE"


def test_jsonpb_is_json() -> None:
    response = samples.response(samples.tcp_flow())
    assert render("jsonpb", response) == render("json", response)


# --- colour ---------------------------------------------------------------------------------------


def colored(flow: object) -> str:
    out = io.StringIO()
    printer = make_printer("compact", Sink(out, color=True), Sink(io.StringIO()), PrintOptions())
    printer.write(samples.response(flow))  # type: ignore[arg-type]
    return out.getvalue()


def test_colour_follows_the_verdict() -> None:
    assert "\x1b[32mFORWARDED\x1b[0m" in colored(samples.tcp_flow())
    assert "\x1b[31mDROPPED\x1b[0m" in colored(samples.kernel_drop())
    assert "\x1b[31mDENIED\x1b[0m" in colored(samples.policy_verdict())
    assert "\x1b[36mdefault/client:\x1b[0m\x1b[33m34567\x1b[0m" in colored(samples.tcp_flow())
    assert "\x1b[35m(ID:12345)\x1b[0m" in colored(samples.tcp_flow())


def test_coloured_and_plain_say_the_same() -> None:
    import re

    plain = compact(samples.tcp_flow()) + "\n"
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored(samples.tcp_flow())) == plain


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("choice", "stream", "environment", "expected"),
    [
        ("always", io.StringIO(), {}, True),
        ("never", _Terminal(), {}, False),
        ("auto", _Terminal(), {}, True),
        ("auto", io.StringIO(), {}, False),
        ("auto", _Terminal(), {"NO_COLOR": "1"}, False),
        ("auto", _Terminal(), {"TERM": "dumb"}, False),
    ],
)
def test_colour_choice(
    monkeypatch: pytest.MonkeyPatch,
    choice: str,
    stream: io.StringIO,
    environment: dict[str, str],
    expected: bool,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert wants_color(choice, stream) is expected
