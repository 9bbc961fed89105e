"""Running a loaded program on a crafted packet with BPF_PROG_TEST_RUN, as Cilium's bpf/tests do.

The kernel builds an skb from the bytes (Ethernet first), runs the program (and whatever it tail-calls) and
returns its verdict and the packet as the program left it. The skb's device is the loopback of the caller's
network namespace unless `ifindex` names another device there (the kernel only lets a few __sk_buff fields be
set; ifindex is one). bcc 0.26 has no wrapper for this command (0.30 added one).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from flowscope.observer.datapath.bpfsys import BPF_PROG_TEST_RUN, bpf

TC_ACT_OK = 0
TC_ACT_SHOT = 2

# struct __sk_buff up to and including ifindex (offset 40): the kernel zero-fills the rest of a shorter ctx.
_SKB_CTX_LEN = 44
_SKB_IFINDEX_OFF = 40
_MAX_PACKET_OUT = 64 * 1024


class _TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class RunResult:
    retval: int  # the program's return value (TC_ACT_*)
    data_out: bytes  # the packet after the program ran
    duration_ns: int  # mean time per run, as the kernel measured it


def prog_test_run(prog_fd: int, packet: bytes, *, repeat: int = 1, ifindex: int = 0) -> RunResult:
    """Run the program `repeat` times on `packet` (at least an Ethernet header, 14 bytes)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + _MAX_PACKET_OUT)
    attr = _TestRunAttr(
        prog_fd=prog_fd,
        data_size_in=len(packet),
        data_size_out=ctypes.sizeof(data_out),
        data_in=ctypes.addressof(data_in),
        data_out=ctypes.addressof(data_out),
        repeat=repeat,
    )
    if ifindex:
        ctx = bytearray(_SKB_CTX_LEN)
        struct.pack_into("<I", ctx, _SKB_IFINDEX_OFF, ifindex)
        ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx))
        attr.ctx_in = ctypes.addressof(ctx_in)
        attr.ctx_size_in = len(ctx)
    bpf(BPF_PROG_TEST_RUN, attr)
    return RunResult(attr.retval, data_out.raw[: attr.data_size_out], attr.duration)
