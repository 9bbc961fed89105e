"""Traffic direction and is_reply: one set of rules for the decoder (one record) and the filters (a batch).

Hubble decides direction per event kind:
- trace: only at an endpoint (endpoint id set) and when conntrack knew the connection; a packet leaving the
  endpoint is EGRESS, one arriving is INGRESS, and a reply flips it. flowscope's datapath runs on the
  endpoint's own device, so where the packet was seen (the observation point) says which way it goes:
  FROM_LXC (and the other TO_* points that carry an endpoint's packet away) leave it, TO_LXC (and the FROM_*
  points) arrive. Proxy points are ambiguous and stay unknown.
- L7 (type 129, subtype = the point): as a trace. A request leaving its client is EGRESS, and so is the
  response arriving there (a reply), as both halves are in Hubble's flows from an egress proxy.
- drop: at an endpoint, EGRESS when that endpoint owns the packet's source address, else INGRESS (drops are
  taken not to be replies).
- policy verdict: the direction the policy was evaluated in, from policy_flags bits 0-1 (1 ingress, 2 egress).

The rules are a lookup table indexed by a small integer key. `direction_key` builds that key from plain
arithmetic, so the very same function runs on Python ints (one record) and on numpy arrays (a batch).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from flowscope.common import names
from flowscope.observer import events

UNKNOWN: Final = 0
INGRESS: Final = 1
EGRESS: Final = 2

# is_reply, as a small number: the record says nothing / it is not a reply / it is a reply.
REPLY_UNKNOWN: Final = 0
NOT_REPLY: Final = 1
IS_REPLY: Final = 2

_TRACE_POINTS = 14  # Cilium's trace points 0..13
_DROP_ROW = _TRACE_POINTS + 1
_POLICY_ROW = _TRACE_POINTS + 2
_STATES = 64  # six state bits, below

# Which way a packet seen at each trace point moves relative to the endpoint the point belongs to.
_TRACE_BASE = {
    names.TRACE_TO_LXC: INGRESS,
    names.TRACE_FROM_LXC: EGRESS,
    names.TRACE_TO_HOST: EGRESS,
    names.TRACE_TO_STACK: EGRESS,
    names.TRACE_TO_OVERLAY: EGRESS,
    names.TRACE_TO_NETWORK: EGRESS,
    names.TRACE_FROM_HOST: INGRESS,
    names.TRACE_FROM_STACK: INGRESS,
    names.TRACE_FROM_OVERLAY: INGRESS,
    names.TRACE_FROM_NETWORK: INGRESS,
}
_FLIPPED = {UNKNOWN: UNKNOWN, INGRESS: EGRESS, EGRESS: INGRESS}


def direction_key(
    event_type: Any, subtype: Any, flags: Any, ep_id: Any, policy_flags: Any, source_is_endpoint: Any
) -> Any:
    """The table row (what kind of event, at which trace point) and state bits of a record, as one integer.

    Works element-wise on int arrays as on ints: only comparisons, +, * and & appear.
    """
    row = (
        ((event_type == names.EVENT_TRACE) + (event_type == names.EVENT_L7)) * (subtype < _TRACE_POINTS) * (subtype + 1)
        + (event_type == names.EVENT_DROP) * _DROP_ROW
        + (event_type == names.EVENT_POLICY_VERDICT) * _POLICY_ROW
    )
    state = (
        (ep_id != 0) * 1
        + ((flags & events.F_REPLY_KNOWN) != 0) * 2
        + ((flags & events.F_REPLY) != 0) * 4
        + (source_is_endpoint != 0) * 8
        + (policy_flags & 3) * 16
    )
    return row * _STATES + state


def reply_state(flags: Any) -> Any:
    """REPLY_UNKNOWN, NOT_REPLY or IS_REPLY: known only when conntrack knew the connection."""
    return ((flags & events.F_REPLY_KNOWN) != 0) * (1 + ((flags & events.F_REPLY) != 0))


def _rule(row: int, state: int) -> int:
    """The direction for one table cell, written the way the module docstring says it."""
    at_endpoint, known, reply = state & 1, state & 2, state & 4
    source_is_endpoint, policy_direction = state & 8, (state >> 4) & 3
    if row == _POLICY_ROW:
        return {1: INGRESS, 2: EGRESS}.get(policy_direction, UNKNOWN)
    if row == _DROP_ROW:
        if not at_endpoint:
            return UNKNOWN
        return EGRESS if source_is_endpoint else INGRESS
    if row == 0 or not at_endpoint or not known:
        return UNKNOWN
    base = _TRACE_BASE.get(row - 1, UNKNOWN)
    return _FLIPPED[base] if reply else base


_TABLE = np.array([_rule(row, state) for row in range(_POLICY_ROW + 1) for state in range(_STATES)], dtype=np.uint8)
_TABLE_LIST: list[int] = _TABLE.tolist()


def traffic_direction(
    event_type: int, subtype: int, flags: int, ep_id: int, policy_flags: int, source_is_endpoint: bool
) -> int:
    """flow.TrafficDirection of one record."""
    return _TABLE_LIST[direction_key(event_type, subtype, flags, ep_id, policy_flags, source_is_endpoint)]


def traffic_directions(records: np.ndarray, source_ids: np.ndarray) -> np.ndarray:
    """flow.TrafficDirection of every record (uint8).

    `source_ids` is, per record, the id of the local endpoint that owns the source address (0 for none); see
    EndpointIndex.
    """
    ep_id = records["ep_id"].astype(np.int64)
    key = direction_key(
        records["type"].astype(np.int64),
        records["subtype"].astype(np.int64),
        records["flags"].astype(np.int64),
        ep_id,
        records["policy_flags"].astype(np.int64),
        np.asarray(source_ids, dtype=np.int64) == ep_id,
    )
    return _TABLE[key]


def reply_states(records: np.ndarray) -> np.ndarray:
    return np.asarray(reply_state(records["flags"].astype(np.int64)), dtype=np.uint8)
