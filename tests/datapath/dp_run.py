"""Running packets through a loaded datapath and checking the events it emits."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import numpy as np

from flowscope.common import names
from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath
from flowscope.observer.datapath.testrun import TC_ACT_OK, prog_test_run

LOOPBACK = 1  # BPF_PROG_TEST_RUN's skb device unless told otherwise
EP_ID = 7
EP_IDENTITY = 5555
WORLD = 2
CAPLEN = 128


def run_one(dp: Datapath, program: str, packet: bytes, ifindex: int = 0) -> np.void:
    """Run `program` on `packet`: it must pass unchanged and emit exactly one event, which is returned."""
    before = time.monotonic_ns()
    result = prog_test_run(dp.program_fd(program), packet, ifindex=ifindex)
    after = time.monotonic_ns()
    assert result.retval == TC_ACT_OK
    assert result.data_out == packet
    batch = dp.reader().read_batch(0)
    assert len(batch) == 1, f"{len(batch)} events"
    event = batch[0]
    assert before <= int(event["ts"]) <= after
    return event


def addr16(text: str | None) -> bytes:
    """saddr/daddr as the datapath fills them: IPv6 in 16 bytes, IPv4 in the first 4, none as zeros."""
    if text is None:
        return bytes(16)
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def header(event: np.void) -> dict[str, Any]:
    """The header fields of an event as plain Python values (addresses and the overlay's VNI as bytes)."""
    out: dict[str, Any] = {}
    for name, kind in ev.HEADER_FIELDS:
        if name.startswith("pad"):
            continue
        value = event[name]
        out[name] = bytes(value) if kind.startswith("V") else int(value)
    return out


def expected_trace(packet: bytes, **fields: Any) -> dict[str, Any]:
    """What a passing packet's trace event holds unless a test says otherwise (from-container on loopback)."""
    base: dict[str, Any] = {
        "type": names.EVENT_TRACE,
        "subtype": names.TRACE_FROM_LXC,
        "version": ev.EVENT_VERSION,
        "flags": 0,
        "ifindex": LOOPBACK,
        "len_orig": len(packet),
        "len_cap": min(len(packet), CAPLEN),
        "ep_id": EP_ID,
        "src_identity": EP_IDENTITY,
        "dst_identity": 0,
        "ethertype": 0,
        "l4_proto": 0,
        "tcp_flags": 0,
        "sport": 0,
        "dport": 0,
        "trace_reason": 0,
        "verdict": names.VERDICT_FORWARDED,
        "policy_flags": 0,
        "drop_reason": 0,
        "tcp_flags_seen": 0,
        "vni": bytes(3),
        "packets": 1,
        "rule": 0,
        "bytes": len(packet),
        "location": 0,
        "saddr": bytes(16),
        "daddr": bytes(16),
        "src_names": 0,  # the agent's to fill, never the datapath's
        "dst_names": 0,
    }
    for key in ("saddr", "daddr"):
        if key in fields:
            fields[key] = addr16(fields[key])
    base.update(fields)
    return base


def assert_event(event: np.void, packet: bytes, expected: dict[str, Any]) -> None:
    """Every header field as expected (ts, cpu and hash vary), and the packet's first bytes captured."""
    got = header(event)
    for volatile in ("ts", "cpu", "hash"):
        got.pop(volatile)
    assert got == expected
    assert bytes(event["data"])[: expected["len_cap"]] == packet[: expected["len_cap"]]
