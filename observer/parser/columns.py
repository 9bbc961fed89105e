"""Columns of a record array the header does not offer directly: addresses as numbers, IP and L4 presence.

The header stores addresses as 16 raw bytes. Reinterpreting those bytes in place (a numpy view with a dtype
that puts big-endian integers at the same offsets) gives comparable numbers without copying a thing:
an IPv4 address as one uint32, an IPv6 address as two uint64 halves (for prefix masks) or as 16 sortable
bytes (for exact look-ups). The decoder, the direction rules and the filters all read presence the same way
through here, so a flow the filters select is the flow the decoder shows.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

from flowscope.observer.events import F_IPV6, F_L4

Side = Literal["src", "dst"]

_ADDRESS_OFFSET = {"src": 80, "dst": 96}  # saddr and daddr in struct fs_event
IP_ETHERTYPES = (0x0800, 0x86DD)


@cache
def _address_view(itemsize: int, side: Side) -> np.dtype:
    offset = _ADDRESS_OFFSET[side]
    return np.dtype(
        {
            "names": ["v4", "hi", "lo", "raw"],
            "formats": [">u4", ">u8", ">u8", "S16"],
            "offsets": [offset, offset, offset + 8, offset],
            "itemsize": itemsize,
        }
    )


def addresses(records: np.ndarray, side: Side) -> np.ndarray:
    """A view of one side's address: fields v4 (uint32), hi and lo (uint64 halves) and raw (16 bytes)."""
    return records.view(_address_view(records.dtype.itemsize, side))


def is_ipv6(records: np.ndarray) -> np.ndarray:
    return (records["flags"] & F_IPV6) != 0


def has_ip(records: np.ndarray) -> np.ndarray:
    """Records whose IP header was read: an IP ethertype and addresses that are not both left at zero."""
    src, dst = addresses(records, "src"), addresses(records, "dst")
    addressed = (src["hi"] | src["lo"] | dst["hi"] | dst["lo"]) != 0
    ethertype = records["ethertype"]
    return ((ethertype == IP_ETHERTYPES[0]) | (ethertype == IP_ETHERTYPES[1])) & addressed


def has_l4(records: np.ndarray) -> np.ndarray:
    """Records whose ports (or ICMP type and code) were read from the packet."""
    return (records["flags"] & F_L4) != 0
