"""What the kernel drop program must know about the running kernel, taken from its BTF.

Two things, both read at start-up and never written by hand:
- struct offsets (sk_buff, net_device, net, sock), handed to bpf/kdrop.c as -D defines. The program reads these
  structs with bpf_probe_read_kernel at fixed types, so each field's size is checked here too: a kernel whose
  layout no longer fits what the C reads fails at load, with the field named, instead of reporting garbage;
- the drop reasons: `enum skb_drop_reason`, whose values change from kernel to kernel (docs/reference/peers.md:
  pwru's names broke on new kernels because it kept its own table).

Which enumerators are drops: the kernel names every real reason SKB_DROP_REASON_<NAME>. SKB_NOT_DROPPED_YET and
SKB_CONSUMED (a packet that was used, not dropped) lack that prefix, and two carry it without being reasons:
SKB_DROP_REASON_MAX (the count) and SKB_DROP_REASON_SUBSYS_MASK (the bits naming a subsystem's own reasons).
NOT_SPECIFIED stays a name (the program reports it only when asked, see bpf/kdrop.c). The values of NO_SOCKET and
QUEUE_PURGE are passed too: with them the kernel also frees packets that were not lost on the network (echo
replies a raw socket took, a closing socket's queues), which the program leaves out (kdrop/skb.h).
"""

from __future__ import annotations

from dataclasses import dataclass

from flowscope.observer.datapath.btf import Btf, BtfError

_PREFIX = "SKB_DROP_REASON_"
_MARKERS = ("MAX", "SUBSYS_MASK")
_NEVER = 0xFFFFFFFF  # for a sentinel this kernel's enum does not have: no u32 reason equals it in practice

# define -> (struct, member path, the size the C reads it at)
FIELDS: dict[str, tuple[str, str, int]] = {
    "FS_SKB_DEV": ("sk_buff", "dev", 8),
    "FS_SKB_SK": ("sk_buff", "sk", 8),
    "FS_SKB_LEN": ("sk_buff", "len", 4),
    "FS_SKB_HASH": ("sk_buff", "hash", 4),
    "FS_SKB_TRANSPORT_HEADER": ("sk_buff", "transport_header", 2),
    "FS_SKB_NETWORK_HEADER": ("sk_buff", "network_header", 2),
    "FS_SKB_MAC_HEADER": ("sk_buff", "mac_header", 2),
    "FS_SKB_TAIL": ("sk_buff", "tail", 4),  # an offset from head on 64-bit kernels (NET_SKBUFF_DATA_USES_OFFSET)
    "FS_SKB_HEAD": ("sk_buff", "head", 8),
    "FS_SKB_DATA": ("sk_buff", "data", 8),
    "FS_SKB_PROTOCOL": ("sk_buff", "protocol", 2),  # network order; packet-path hops (bpf/pathtrace.c)
    "FS_NETDEV_IFINDEX": ("net_device", "ifindex", 4),
    "FS_NETDEV_NET": ("net_device", "nd_net.net", 8),
    "FS_NET_INUM": ("net", "ns.inum", 4),
    "FS_SOCK_NET": ("sock", "__sk_common.skc_net.net", 8),
}


class KernelLayoutError(RuntimeError):
    """The running kernel's structs are not what bpf/kdrop.c can read."""


@dataclass(frozen=True)
class KernelLayout:
    offsets: dict[str, int]  # define -> byte offset in its struct
    skb_read_len: int  # bytes of sk_buff the program copies to reach every field it uses

    @classmethod
    def of(cls, btf: Btf) -> KernelLayout:
        offsets: dict[str, int] = {}
        skb_end = 0
        for define, (struct, path, size) in FIELDS.items():
            try:
                field = btf.field(struct, path)
            except BtfError as exc:
                raise KernelLayoutError(f"{define}: {exc}") from exc
            if field.size != size:
                raise KernelLayoutError(f"{struct}.{path} is {field.size} bytes here; bpf/kdrop.c reads {size}")
            offsets[define] = field.offset
            if struct == "sk_buff":
                skb_end = max(skb_end, field.offset + field.size)
        return cls(offsets, (skb_end + 7) & ~7)

    def defines(self) -> dict[str, int]:
        return {**self.offsets, "FS_SKB_READ_LEN": self.skb_read_len}


@dataclass(frozen=True)
class DropReasons:
    """The running kernel's drop reasons: value -> name without the prefix ("NO_SOCKET"), and the sentinels."""

    names: dict[int, str]
    not_dropped_yet: int
    consumed: int
    not_specified: int
    no_socket: int
    queue_purge: int
    tc_ingress: int
    tc_egress: int
    count: int  # SKB_DROP_REASON_MAX: core reasons are below it

    @classmethod
    def of(cls, btf: Btf) -> DropReasons:
        try:
            enum = btf.enum("skb_drop_reason")
        except BtfError as exc:
            raise KernelLayoutError(f"this kernel has no drop reasons: {exc}") from exc
        names = {
            value: name.removeprefix(_PREFIX)
            for name, value in enum.items()
            if name.startswith(_PREFIX) and name.removeprefix(_PREFIX) not in _MARKERS
        }
        return cls(
            names=names,
            not_dropped_yet=enum.get("SKB_NOT_DROPPED_YET", _NEVER),
            consumed=enum.get("SKB_CONSUMED", _NEVER),
            not_specified=enum.get(_PREFIX + "NOT_SPECIFIED", _NEVER),
            no_socket=enum.get(_PREFIX + "NO_SOCKET", _NEVER),
            queue_purge=enum.get(_PREFIX + "QUEUE_PURGE", _NEVER),
            tc_ingress=enum.get(_PREFIX + "TC_INGRESS", _NEVER),
            tc_egress=enum.get(_PREFIX + "TC_EGRESS", _NEVER),
            count=enum.get(_PREFIX + "MAX", max(names, default=0) + 1),
        )

    def defines(self) -> dict[str, int]:
        return {
            "FS_SKB_NOT_DROPPED_YET": self.not_dropped_yet,
            "FS_SKB_CONSUMED": self.consumed,
            "FS_SKB_DROP_REASON_NOT_SPECIFIED": self.not_specified,
            "FS_SKB_DROP_REASON_NO_SOCKET": self.no_socket,
            "FS_SKB_DROP_REASON_QUEUE_PURGE": self.queue_purge,
            "FS_SKB_DROP_REASON_TC_INGRESS": self.tc_ingress,
            "FS_SKB_DROP_REASON_TC_EGRESS": self.tc_egress,
            # one token bucket per core reason, and one more shared by subsystem reasons (values past MAX)
            "FS_KDROP_BUCKETS": self.count + 1,
        }
