"""The numbers in a hop record mean what the C says they mean: observer/trace/hops.py's tables against the
datapath's headers, and the hop kinds against trace.proto's HopKind."""

from __future__ import annotations

from flowscope.api.trace import trace_pb2
from flowscope.observer.datapath.c_source import header_define, tail_call_slots
from flowscope.observer.trace import hops


def test_tracepoint_numbers_are_trace_h_s() -> None:
    names = {"NETIF_RECEIVE": "net:netif_receive_skb", "DEV_QUEUE": "net:net_dev_queue", "DEV_XMIT": "net:net_dev_xmit"}
    names |= {"KFREE": "skb:kfree_skb", "CONSUME": "skb:consume_skb"}
    assert {header_define("trace.h", f"FS_HOP_TP_{key}"): name for key, name in names.items()} == hops.TRACEPOINTS
    assert (hops.KFREE, hops.XMIT) == (
        header_define("trace.h", "FS_HOP_TP_KFREE"),
        header_define("trace.h", "FS_HOP_TP_DEV_XMIT"),
    )


def test_hop_kinds_are_the_protos() -> None:
    for kind, proto in {
        "ENTRY": "TC_ENTRY",
        "STAGE": "TC_STAGE",
        "DROP": "TC_DROP",
        "PASS": "TC_PASS",
        "KERNEL": "KERNEL",
    }.items():
        assert header_define("trace.h", f"FS_HOP_{kind}") == trace_pb2.HopKind.Value(proto)


def test_verdict_bits_policy_work_and_directions_are_the_headers() -> None:
    assert [header_define("trace.h", f"FS_PATH_V_{b}") for b in ("KNOWN", "ALLOWED", "ENFORCED")] == [
        hops.V_KNOWN,
        hops.V_ALLOWED,
        hops.V_ENFORCED,
    ]
    todo = {header_define("state.h", f"FS_POLICY_{name.upper()}"): name for name in hops.POLICY_TODO.values()}
    assert todo == hops.POLICY_TODO
    assert header_define("maps.h", "FS_CT_REPLY") == hops.CT_REPLY
    assert hops.STAGES == {slot: name.removeprefix("stage_") for slot, name in tail_call_slots().items()}
    assert set(hops.STAGES.values()) == {"ipv4", "ipv6", "other", "send_trace", "ct", "policy", "lb"}
