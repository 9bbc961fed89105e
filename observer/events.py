"""The datapath's event record as the agent sees it: a numpy dtype mirroring `struct fs_event`.

Why numpy: every event has the same size, so a batch read from the kernel's ring buffer is one array. Filters
and the flow ring work on whole columns of it at once instead of on one Python object per packet, which is
what keeps the agent's cost per event small (docs/reference/design-notes.md, "The event path, kernel to
ring"). The C layout lives in bpf/include/flowscope/event.h; tests/test_event_layout.py checks that the two agree.
"""

from __future__ import annotations

from functools import cache

import numpy as np

DEFAULT_CAPLEN = 128
EVENT_VERSION = 1

# type: Cilium's monitor message types.
EVENT_DROP = 1
EVENT_TRACE = 4
EVENT_POLICY_VERDICT = 5
EVENT_LOST = 255  # made by the agent: a LostEvent kept in the flow ring

# subtype of EVENT_TRACE: Cilium's trace observation points.
TRACE_TO_LXC = 0
TRACE_TO_PROXY = 1
TRACE_TO_HOST = 2
TRACE_TO_STACK = 3
TRACE_TO_OVERLAY = 4
TRACE_FROM_LXC = 5
TRACE_FROM_PROXY = 6
TRACE_FROM_HOST = 7
TRACE_FROM_STACK = 8
TRACE_FROM_OVERLAY = 9
TRACE_FROM_NETWORK = 10
TRACE_TO_NETWORK = 11

# flags
F_IPV6 = 0x01
F_REPLY = 0x02
F_REPLY_KNOWN = 0x04
F_L4 = 0x08
F_FRAGMENT = 0x10
F_TRUNCATED = 0x20
F_KERNEL_DROP = 0x40
F_AGGREGATE = 0x80

# verdict: flow.Verdict wire values.
VERDICT_FORWARDED = 1
VERDICT_DROPPED = 2

# Lost-event sources, as flow.LostEventSource; kept in `subtype` of an EVENT_LOST record.
LOST_KERNEL_BUFFER = 1
LOST_AGENT_QUEUE = 2
LOST_RING_OVERRUN = 3

HEADER_FIELDS: list[tuple[str, str]] = [
    ("ts", "<u8"),
    ("type", "u1"),
    ("subtype", "u1"),
    ("version", "u1"),
    ("flags", "u1"),
    ("ifindex", "<u4"),
    ("len_orig", "<u4"),
    ("len_cap", "<u2"),
    ("ep_id", "<u2"),
    ("hash", "<u4"),
    ("src_identity", "<u4"),
    ("dst_identity", "<u4"),
    ("ethertype", "<u2"),
    ("l4_proto", "u1"),
    ("tcp_flags", "u1"),
    ("sport", "<u2"),
    ("dport", "<u2"),
    ("trace_reason", "u1"),
    ("verdict", "u1"),
    ("policy_flags", "u1"),
    ("cpu", "u1"),
    ("drop_reason", "<u4"),
    ("tcp_flags_seen", "u1"),
    ("pad0", "V3"),
    ("packets", "<u4"),
    ("rule", "<u4"),
    ("bytes", "<u8"),
    ("location", "<u8"),
    ("saddr", "V16"),
    ("daddr", "V16"),
]
HEADER_SIZE = 112


@cache
def event_dtype(caplen: int = DEFAULT_CAPLEN) -> np.dtype:
    """The dtype of one `struct fs_event` compiled with FS_CAPLEN=caplen."""
    dtype = np.dtype([*HEADER_FIELDS, ("data", f"V{caplen}")], align=False)
    assert dtype.itemsize == HEADER_SIZE + caplen, dtype.itemsize
    return dtype


def record_stride(caplen: int = DEFAULT_CAPLEN) -> int:
    """Bytes one event takes in the kernel ring buffer: an 8-byte record header, the event, 8-byte aligned."""
    return (8 + HEADER_SIZE + caplen + 7) & ~7
