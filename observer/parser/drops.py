"""Why a packet was dropped, as a flow says it: Cilium's reasons on the wire, the kernel's own named by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from flowscope.api.flow import flow_pb2
from flowscope.observer import events
from flowscope.observer.parser.record import Record

_ENUM_MAX = 0x7FFF_FFFF  # protobuf enums are int32; the record's drop_reason is a __u32


class DropReasons:
    """Names the running kernel's drop reasons and places. `kernel_reasons` names its `enum skb_drop_reason`
    values ({3: "NO_SOCKET", ...}), which differ from kernel to kernel; `locate` turns a kernel drop's address
    into "symbol+offset" when it can."""

    def __init__(self, kernel_reasons: Mapping[int, str] | None, locate: Callable[[int], str | None] | None) -> None:
        self._kernel_reasons = dict(kernel_reasons or {})
        self._locate = locate

    def fill(self, flow: flow_pb2.Flow, r: Record) -> None:
        """Why it was dropped: a Cilium reason on the wire, or the kernel's own, named, in flowscope's part."""
        if not r.flags & events.F_KERNEL_DROP:
            flow.drop_reason = r.drop_reason
            if r.drop_reason <= _ENUM_MAX:  # an enum is an int32 on the wire: a larger code stays unnamed (0)
                flow.drop_reason_desc = cast(flow_pb2.DropReason, r.drop_reason)
            return
        extra = flow.flowscope
        extra.kernel_drop_reason = self._kernel_reasons.get(r.drop_reason, str(r.drop_reason))
        if r.location:
            located = self._locate(r.location) if self._locate else None
            extra.drop_location = located or f"0x{r.location:x}"
