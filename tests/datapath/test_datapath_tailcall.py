"""A missed tail call is never a silent pass: it is reported as a MISSED_TAIL_CALL drop and dropped."""

from __future__ import annotations

import pytest
from dp_packets import (
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SYN,
    arp_request,
    eth,
    ipv4,
    ipv6,
    tcp,
    udp,
)
from dp_run import EP_ID, EP_IDENTITY, WORLD, addr16

from flowscope.common import names
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.testrun import TC_ACT_OK, TC_ACT_SHOT, prog_test_run

pytestmark = pytest.mark.bpf

MISSED_TAIL_CALL = 140
TCP4 = eth(ETH_P_IP, ipv4("192.0.2.1", "192.0.2.2", IPPROTO_TCP, tcp(1000, 80, SYN)))
UDP6 = eth(ETH_P_IPV6, ipv6("2001:db8::1", "2001:db8::2", IPPROTO_UDP, udp(1000, 53)))
ARP = eth(ETH_P_ARP, arp_request("192.0.2.1", "192.0.2.2"))


def slot_of(dp: Datapath, program: str) -> int:
    return next(slot for slot, name in dp.tail_call_slots.items() if name == program)


def run_dropped(dp: Datapath, packet: bytes) -> dict[str, object]:
    """Run a packet that must be dropped for a missed tail call; the event's parsed fields."""
    result = prog_test_run(dp.program_fd("from_container"), packet)
    assert result.retval == TC_ACT_SHOT
    batch = dp.reader().read_batch(0)
    assert len(batch) == 1
    event = batch[0]
    assert (int(event["type"]), int(event["subtype"])) == (names.EVENT_DROP, MISSED_TAIL_CALL)
    assert (int(event["verdict"]), int(event["drop_reason"])) == (names.VERDICT_DROPPED, MISSED_TAIL_CALL)
    assert (int(event["ep_id"]), int(event["src_identity"])) == (EP_ID, EP_IDENTITY)
    assert bytes(event["data"])[: int(event["len_cap"])] == packet
    parsed: dict[str, object] = {name: int(event[name]) for name in ("ethertype", "l4_proto", "sport", "dport")}
    parsed["dst_identity"] = int(event["dst_identity"])
    parsed["saddr"] = bytes(event["saddr"])
    return parsed


def test_empty_protocol_stage_drops_with_what_the_entry_parsed(dp: Datapath) -> None:
    dp.clear_tail_call(slot_of(dp, "stage_ipv4"))
    got = run_dropped(dp, TCP4)
    # only L2 was parsed before the missed call
    assert got == {
        "ethertype": ETH_P_IP,
        "l4_proto": 0,
        "sport": 0,
        "dport": 0,
        "dst_identity": 0,
        "saddr": bytes(16),
    }


def test_empty_emit_stage_drops_with_everything_parsed(dp: Datapath) -> None:
    dp.clear_tail_call(slot_of(dp, "stage_send_trace"))
    got = run_dropped(dp, UDP6)
    assert got == {
        "ethertype": ETH_P_IPV6,
        "l4_proto": IPPROTO_UDP,
        "sport": 1000,
        "dport": 53,
        "dst_identity": WORLD,
        "saddr": addr16("2001:db8::1"),
    }


def test_empty_other_stage_drops_non_ip(dp: Datapath) -> None:
    dp.clear_tail_call(slot_of(dp, "stage_other"))
    assert run_dropped(dp, ARP)["ethertype"] == ETH_P_ARP


def test_refilled_slots_pass_again(dp: Datapath) -> None:
    dp.clear_tail_call(slot_of(dp, "stage_ipv4"))
    assert prog_test_run(dp.program_fd("from_container"), TCP4).retval == TC_ACT_SHOT
    dp.fill_tail_calls()
    assert prog_test_run(dp.program_fd("from_container"), TCP4).retval == TC_ACT_OK
    types = [int(t) for t in dp.reader().read_batch(0)["type"]]
    assert types == [names.EVENT_DROP, names.EVENT_TRACE]


def test_a_settled_packet_skips_the_stages_with_nothing_to_do(dp: Datapath) -> None:
    """An established connection's packet whose verdict is current and that aggregation silences goes from
    conntrack straight out: neither the policy nor the trace stage is called, so their empty slots drop
    nothing. A packet that has something for them still goes there (and is dropped when a slot is empty)."""
    dp.update_config(aggregation=3, report_flags=0x07)  # medium
    opened = eth(ETH_P_IP, ipv4("192.0.2.1", "192.0.2.2", IPPROTO_UDP, udp(1000, 53, b"q")))
    assert prog_test_run(dp.program_fd("to_container"), opened).retval == TC_ACT_OK  # judged, reported
    dp.clear_tail_call(slot_of(dp, "stage_policy"))
    dp.clear_tail_call(slot_of(dp, "stage_send_trace"))
    dp.reader().read_batch(0)
    for _ in range(3):
        assert prog_test_run(dp.program_fd("to_container"), opened).retval == TC_ACT_OK
    assert len(dp.reader().read_batch(0)) == 0
    dp.update_config(aggregation=0)  # now every packet is a trace: the empty trace slot drops it
    assert prog_test_run(dp.program_fd("to_container"), opened).retval == TC_ACT_SHOT
    [drop] = dp.reader().read_batch(0)
    assert (int(drop["type"]), int(drop["drop_reason"])) == (names.EVENT_DROP, MISSED_TAIL_CALL)
    fresh = eth(ETH_P_IP, ipv4("192.0.2.1", "192.0.2.2", IPPROTO_UDP, udp(1001, 53, b"q")))
    dp.update_config(aggregation=3, report_flags=0x07)
    assert prog_test_run(dp.program_fd("to_container"), fresh).retval == TC_ACT_SHOT  # a new one: to be judged
    [drop] = dp.reader().read_batch(0)
    assert (int(drop["type"]), int(drop["drop_reason"])) == (names.EVENT_DROP, MISSED_TAIL_CALL)
