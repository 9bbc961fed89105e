"""The aggregation behind `flowscope top`: grouping flows into rows, rates over 2/10/40 s, ordering."""

from __future__ import annotations

import cli_samples
import numpy as np
import pytest
import top_samples

from flowscope.api.flow import flow_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.top.grouping import row_key
from flowscope.cli.top.state import FlowTable, sort_order

NOW = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def table_at(clock: Clock) -> FlowTable:
    return FlowTable(clock=clock, capacity=4)  # small, so tests also cross the growth of the arrays


def test_a_connection_and_its_replies_share_one_row() -> None:
    request, reply = row_key(cli_samples.tcp_flow()), row_key(cli_samples.tcp_reply())
    assert request == reply
    assert (request.source, request.destination, request.protocol) == ("default/client", "default/server", "TCP/80")
    assert (request.verdict, request.style, request.drop, request.reason) == ("FORWARDED", "green", False, "")


def test_the_source_port_does_not_make_rows() -> None:
    other = cli_samples.tcp_flow()
    other.l4.TCP.source_port = 50000
    assert row_key(other) == row_key(cli_samples.tcp_flow())


def test_verdict_and_drop_reason_make_rows_of_their_own() -> None:
    forwarded, policy_drop = row_key(cli_samples.tcp_flow()), row_key(cli_samples.cilium_drop())
    kernel_drop = row_key(cli_samples.kernel_drop())
    assert policy_drop != forwarded
    assert (policy_drop.verdict, policy_drop.reason, policy_drop.style, policy_drop.drop) == (
        "DROPPED",
        "POLICY_DENIED",
        "red",
        True,
    )
    assert (kernel_drop.protocol, kernel_drop.reason) == ("UDP/9999", "NO_SOCKET")
    denied = cli_samples.policy_verdict(allowed=False)
    denied.drop_reason_desc = flow_pb2.POLICY_DENIED
    assert (row_key(denied).verdict, row_key(denied).drop) == ("DENIED", True)
    assert row_key(denied).reason == policy_drop.reason  # one word for one reason, whichever event said it


def test_names_without_pods_and_from_the_network() -> None:
    world = row_key(cli_samples.icmp4_world())
    assert (world.destination, world.protocol) == ("1.1.1.1 (world)", "ICMPv4")
    hostile = cli_samples.tcp_flow()
    hostile.source.pod_name = "evil\x1b[2Jpod"
    assert row_key(hostile).source == "default/evil?[2Jpod"


def test_rows_count_flows_packets_bytes_and_last_seen() -> None:
    clock = Clock()
    table = table_at(clock)
    for offset in (-3.0, -2.0, -1.0):
        table.add(top_samples.response(cli_samples.aggregated_flow(), NOW + offset))
    table.add(top_samples.response(cli_samples.tcp_reply(), NOW - 0.5))
    table.add(top_samples.response(cli_samples.kernel_drop(), NOW - 0.5))
    snapshot = table.snapshot()
    assert len(snapshot) == 2
    assert list(snapshot.total) == [4, 1]
    assert (int(snapshot.packets[0]), int(snapshot.bytes[0]), bool(snapshot.aggregated[0])) == (36, 3 * 3456, True)
    assert not snapshot.aggregated[1]
    assert snapshot.last_seen[0] == pytest.approx(NOW - 0.5)
    assert (snapshot.flows, snapshot.drops) == (5, 1)
    assert snapshot.nodes.seen == {"node-1"}


def test_rates_over_each_window() -> None:
    """One flow a second for the last 40 s, on a second boundary: every window reads 1/s; 20 s later the 2 s and
    10 s windows are empty and the 40 s one holds half."""
    clock = Clock()
    table = table_at(clock)
    for back in reversed(range(40)):
        clock.now = NOW - back - 0.5  # each arrives as it happens
        table.add_flow(top_samples.at(cli_samples.tcp_flow(), clock.now))
    clock.now = NOW
    rates = table.snapshot().rates[:, 0]
    assert rates == pytest.approx([1.0, 1.0, 1.0])
    clock.now += 20
    rates = table.snapshot().rates[:, 0]
    assert rates == pytest.approx([0.0, 0.0, 0.5])


def test_a_burst_fades_smoothly_out_of_the_2s_window() -> None:
    clock = Clock(NOW + 0.05)
    table = table_at(clock)
    for _ in range(10):
        table.add_flow(top_samples.at(cli_samples.tcp_flow(), NOW + 0.05))
    clock.now = NOW + 0.1
    assert table.snapshot().rates[0, 0] == pytest.approx(5.0)  # 10 flows in the last 2 s
    clock.now = NOW + 2.5  # the burst's second is half outside the window
    assert table.snapshot().rates[0, 0] == pytest.approx(2.5)
    clock.now = NOW + 3.01
    assert table.snapshot().rates[0, 0] == pytest.approx(0.0)
    assert table.snapshot().rates[2, 0] == pytest.approx(10 / 40)


def test_flows_older_than_the_windows_count_only_in_the_total() -> None:
    clock = Clock()
    table = table_at(clock)
    table.add_flow(top_samples.at(cli_samples.tcp_flow(), NOW))
    table.add_flow(top_samples.at(cli_samples.tcp_flow(), NOW - 120))
    snapshot = table.snapshot()
    assert int(snapshot.total[0]) == 2
    assert snapshot.rates[2, 0] == pytest.approx(1 / 40, abs=0.01)


def test_a_server_clock_ahead_of_ours_still_shows_live_rates() -> None:
    """The server's clock is an hour ahead: its flows are not in the future, they are now."""
    clock = Clock()
    table = table_at(clock)
    for step in range(20):
        clock.now = NOW + step * 0.1
        table.add_flow(top_samples.at(cli_samples.tcp_flow(), clock.now + 3600))
    snapshot = table.snapshot()
    assert snapshot.rates[0, 0] == pytest.approx(10.0, rel=0.1)
    assert snapshot.now - snapshot.last_seen[0] == pytest.approx(0.0, abs=0.01)


def test_old_flows_are_not_taken_for_a_slow_server_clock() -> None:
    """A backfill whose newest flow is 20 s old, then silence: nothing is happening now."""
    clock = Clock()
    table = table_at(clock)
    for back in range(20, 40):
        table.add_flow(top_samples.at(cli_samples.tcp_flow(), NOW - back))
    rates = table.snapshot().rates[:, 0]
    assert rates[:2] == pytest.approx([0.0, 0.0])
    assert rates[2] == pytest.approx(20 / 40, abs=0.03)


def test_lost_events_and_node_status() -> None:
    table = table_at(Clock())
    table.add(cli_samples.lost_event())
    table.add(cli_samples.lost_event())
    table.add(cli_samples.node_status(relay_pb2.NODE_CONNECTED, ("node-1", "node-2", "node-3")))
    table.add(cli_samples.node_status(relay_pb2.NODE_UNAVAILABLE, ("node-3",)))
    snapshot = table.snapshot()
    assert snapshot.lost == 2
    assert snapshot.nodes.relayed
    assert snapshot.nodes.connected == {"node-1", "node-2"}
    assert snapshot.nodes.unavailable == {"node-3": "unavailable"}
    table.add(cli_samples.node_status(relay_pb2.NODE_GONE, ("node-3",)))
    assert table.snapshot().nodes.unavailable == {}


def test_an_error_shows_until_the_stream_flows_again() -> None:
    table = table_at(Clock())
    table.set_error("lost the connection")
    assert table.snapshot().error == "lost the connection"
    table.add(top_samples.response(cli_samples.tcp_flow(), NOW))
    assert table.snapshot().error is None


def _three_rows() -> FlowTable:
    """busy: 5 flows now; dropped: 2 flows now; old: 9 flows 30 s ago (highest total, no 2/10 s rate)."""
    clock = Clock()
    table = table_at(clock)
    for _ in range(9):
        table.add_flow(top_samples.at(top_samples.connection("old", "server", 1), NOW - 30))
    for _ in range(5):
        table.add_flow(top_samples.at(top_samples.connection("busy", "server", 2), NOW - 1))
    for _ in range(2):
        table.add_flow(top_samples.at(top_samples.connection("dropped", "server", 3, flow_pb2.DROPPED), NOW - 0.5))
    return table


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("rate", ["busy", "dropped", "old"]),
        ("last", ["dropped", "busy", "old"]),
        ("drops", ["dropped", "busy", "old"]),
        ("total", ["old", "busy", "dropped"]),
    ],
)
def test_sort_keys(sort: str, expected: list[str]) -> None:
    snapshot = _three_rows().snapshot()
    order = sort_order(snapshot, sort, window=1)
    assert [snapshot.keys[row].source.split("/")[1] for row in order] == expected


def test_equal_rows_keep_the_order_they_appeared_in() -> None:
    table = table_at(Clock())
    for name in ("c", "a", "b", "d", "e"):
        table.add_flow(top_samples.at(top_samples.connection(name, "server", 80), NOW))
    snapshot = table.snapshot()
    for sort in ("rate", "last", "drops", "total"):
        assert list(sort_order(snapshot, sort, 0)) == [0, 1, 2, 3, 4]


def test_ten_thousand_rows() -> None:
    table = FlowTable(clock=Clock())
    flow = cli_samples.tcp_flow()
    for row in range(10_000):
        flow.source.pod_name = f"client-{row}"
        table.add_flow(top_samples.at(flow, NOW - row % 40))
    snapshot = table.snapshot()
    assert len(snapshot) == 10_000
    assert np.all(snapshot.total == 1)
    assert float(snapshot.rates[2].sum()) == pytest.approx(10_000 / 40, rel=0.05)


def test_a_flow_of_unknown_direction_from_a_server_port_counts_in_its_connection() -> None:
    """No is_reply (a connection first seen mid-stream, a drop no conntrack knew): `:80 → :34567` is the server
    answering, so it lands in the client's row; from an ephemeral port, or between two low ports, it stays as it
    came."""
    answer = cli_samples.tcp_reply()
    answer.ClearField("is_reply")
    assert row_key(answer) == row_key(cli_samples.tcp_flow())
    asking = cli_samples.tcp_flow(reply=None)
    assert (row_key(asking).source, row_key(asking).protocol) == ("default/client", "TCP/80")
    between_servers = cli_samples.tcp_reply()
    between_servers.ClearField("is_reply")
    between_servers.l4.TCP.destination_port = 1022
    assert (row_key(between_servers).source, row_key(between_servers).protocol) == ("default/server", "TCP/1022")
    dns = row_key(cli_samples.udp_dns_flow())
    assert (dns.destination, dns.protocol) == ("kube-system/coredns-x", "UDP/53")
