"""Drop reasons are named from the running kernel: BTF's enum skb_drop_reason, as the tracepoint names them.

The tracepoint's format file (its print_fmt) is the kernel's own table of the same names, written by another
part of the kernel (the TRACE_DEFINE_ENUM list in include/net/dropreason-core.h); the two must agree on every
reason, so a name in a flow is exactly what `perf trace` or pwru would print on this kernel.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowscope.observer.datapath.btf import Btf
from flowscope.observer.datapath.kdrop_layout import DropReasons

FORMAT = Path("/sys/kernel/tracing/events/skb/kfree_skb/format")


@pytest.fixture(scope="module")
def reasons() -> DropReasons:
    return DropReasons.of(Btf.load())


@pytest.fixture(scope="module")
def tracepoint_names() -> dict[int, str]:
    if not FORMAT.exists():
        from flowscope.observer.datapath.kdrop import ensure_tracefs

        ensure_tracefs()
    print_fmt = FORMAT.read_text().split("print fmt:", 1)[1]
    return {int(value): name for value, name in re.findall(r'\{\s*(\d+),\s*"(\w+)"\s*\}', print_fmt)}


def test_names_agree_with_the_tracepoint(reasons: DropReasons, tracepoint_names: dict[int, str]) -> None:
    listed = {value: name for value, name in tracepoint_names.items() if name != "MAX"}
    assert reasons.names == listed


def test_what_is_not_a_drop_is_left_out(reasons: DropReasons) -> None:
    enum = Btf.load().enum("skb_drop_reason")
    assert reasons.consumed == enum["SKB_CONSUMED"]
    assert reasons.not_dropped_yet == enum["SKB_NOT_DROPPED_YET"]
    assert reasons.consumed not in reasons.names and reasons.not_dropped_yet not in reasons.names
    assert "MAX" not in reasons.names.values() and "SUBSYS_MASK" not in reasons.names.values()
    assert reasons.count == enum["SKB_DROP_REASON_MAX"] == max(reasons.names) + 1


def test_the_reasons_the_tests_rely_on(reasons: DropReasons) -> None:
    by_name = {name: value for value, name in reasons.names.items()}
    assert {"NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP"} <= by_name.keys()
    assert reasons.not_specified == by_name["NOT_SPECIFIED"]
    assert len(reasons.names) > 100  # 126 on 6.18
