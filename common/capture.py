"""How many bytes of each packet an event carries (FS_CAPLEN, compiled into the datapath and the kernel drop
program alike): the default, and the one rule every stage that takes a capture length checks it by.

The rule comes from the record: its data field is FS_CAPLEN bytes and the datapath copies it a word at a time
(so a multiple of 8), `fs_event.len_cap` is 16 bits, and one event must fit a one-page ring buffer (4096).
"""

from __future__ import annotations

DEFAULT_CAPLEN = 128
MAX_CAPLEN = 4096


def check_caplen(caplen: int) -> int:
    """`caplen` when the datapath can compile with it; ValueError that says the rule otherwise."""
    if not 0 < caplen <= MAX_CAPLEN or caplen % 8:
        raise ValueError(f"capture length must be a multiple of 8 in 8..{MAX_CAPLEN}, not {caplen}")
    return caplen
