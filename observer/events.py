"""The datapath's event record as the agent sees it: a numpy dtype mirroring `struct fs_event`.

Why numpy: every event has the same size, so a batch read from the kernel's ring buffer is one array. Filters
and the flow ring work on whole columns of it at once instead of on one Python object per packet, which is
what keeps the agent's cost per event small (docs/reference/design-notes.md, "The event path, kernel to
ring"). The C layout lives in bpf/include/flowscope/event.h; tests/test_event_layout.py checks that the two agree.
The numbers the fields hold (event types, trace points, verdicts, ...) are the wire's too: common/names.py.
"""

from __future__ import annotations

from functools import cache

import numpy as np

DEFAULT_CAPLEN = 128
EVENT_VERSION = 1

# flags: the datapath's own, never on the wire.
F_IPV6 = 0x01
F_REPLY = 0x02
F_REPLY_KNOWN = 0x04
F_L4 = 0x08
F_FRAGMENT = 0x10
F_TRUNCATED = 0x20
F_KERNEL_DROP = 0x40
F_AGGREGATE = 0x80

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
    ("vni", "V3"),  # overlay points: big-endian; `location` then holds the outer IPv4 addresses
    ("packets", "<u4"),
    ("rule", "<u4"),
    ("bytes", "<u8"),
    ("location", "<u8"),
    ("saddr", "V16"),
    ("daddr", "V16"),
    ("src_names", "<u4"),  # the agent's: name-set ids set when the record is stored (observer/l7/names.py)
    ("dst_names", "<u4"),
]
HEADER_SIZE = 120


@cache
def event_dtype(caplen: int = DEFAULT_CAPLEN) -> np.dtype:
    """The dtype of one `struct fs_event` compiled with FS_CAPLEN=caplen."""
    dtype = np.dtype([*HEADER_FIELDS, ("data", f"V{caplen}")], align=False)
    assert dtype.itemsize == HEADER_SIZE + caplen, dtype.itemsize
    return dtype


def record_stride(caplen: int = DEFAULT_CAPLEN) -> int:
    """Bytes one event takes in the kernel ring buffer: an 8-byte record header, the event, 8-byte aligned."""
    return (8 + HEADER_SIZE + caplen + 7) & ~7


def ring_capacity(data_size: int, caplen: int = DEFAULT_CAPLEN) -> int:
    """How many events a kernel ring buffer of `data_size` bytes holds unread: the kernel refuses a record that
    would fill it to the last byte, so a stride that divides the size exactly leaves one record's room unused."""
    return (data_size - 1) // record_stride(caplen)
