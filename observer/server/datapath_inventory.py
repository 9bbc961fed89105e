"""Control.GetDatapath's answer: the datapath inventory (observer/datapath/inventory.py) as its message.

The window is checked here, so a bad one is INVALID_ARGUMENT with the reason, and the call's end (the client
gone, Ctrl-C) cuts the window short: statistics are never left on for a caller who stopped listening. An agent
that cannot switch statistics on (no CAP_SYS_ADMIN, as deployed) answers a window with FAILED_PRECONDITION and
why: the request is fine, the agent's privileges are not, and an inventory without the window still works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
from google.protobuf.duration_pb2 import Duration

from flowscope.api.control import control_pb2
from flowscope.observer.datapath.inventory import MAX_STATS_WINDOW_S, Inventory, StatsUnavailable

Read = Callable[[float, threading.Event], Inventory]


def get_datapath(
    read: Read, node: str, request: control_pb2.GetDatapathRequest, context: grpc.ServicerContext
) -> control_pb2.DatapathInventory:
    window = request.stats_window.ToTimedelta().total_seconds()
    if not 0 <= window <= MAX_STATS_WINDOW_S:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"stats_window is 0 to {MAX_STATS_WINDOW_S:g}s, not {window:g}s"
        )
    ended = threading.Event()
    context.add_callback(ended.set)
    try:
        inventory = read(window, ended)
    except StatsUnavailable as exc:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot count program runs over stats_window: {exc}")
    return inventory_message(inventory, node)


def inventory_message(inventory: Inventory, node: str) -> control_pb2.DatapathInventory:
    message = control_pb2.DatapathInventory(
        node=node,
        hooks=[
            control_pb2.TcxHook(device=h.device, ifindex=h.ifindex, direction=h.direction, program_ids=h.program_ids)
            for h in inventory.hooks
        ],
        programs=[
            control_pb2.BpfProgram(
                id=p.id,
                name=p.name,
                type=p.type,
                held=p.held,
                map_ids=p.map_ids,
                pinned=p.pinned,
                run_count=p.run_count,
                run_time_ns=p.run_time_ns,
            )
            for p in inventory.programs
        ],
        maps=[
            control_pb2.BpfMap(
                id=m.id,
                name=m.name,
                type=m.type,
                key_size=m.key_size,
                value_size=m.value_size,
                max_entries=m.max_entries,
                flags=m.flags,
                counted=m.used is not None,
                used=m.used or 0,
                pinned=m.pinned,
                slots=[control_pb2.TailCallSlot(slot=s.slot, stage=s.stage, program_id=s.program_id) for s in m.slots],
            )
            for m in inventory.maps
        ],
    )
    if inventory.stats_window_s is not None:
        window = Duration()
        window.FromNanoseconds(round(inventory.stats_window_s * 1e9))
        message.stats_window.CopyFrom(window)
    return message
