"""Traffic direction and is_reply: the rules, and one record agreeing with a batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from records import CLIENT, SERVER, lab_registry, record, tcp4

from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.parser import (
    EGRESS,
    INGRESS,
    IS_REPLY,
    NOT_REPLY,
    REPLY_UNKNOWN,
    UNKNOWN,
    FlowDecoder,
    index_of,
    reply_states,
    traffic_direction,
    traffic_directions,
)

KNOWN, REPLY = events.F_REPLY_KNOWN, events.F_REPLY


@pytest.mark.parametrize(
    ("point", "flags", "expected"),
    [
        (names.TRACE_TO_LXC, KNOWN, INGRESS),
        (names.TRACE_TO_LXC, KNOWN | REPLY, EGRESS),
        (names.TRACE_FROM_LXC, KNOWN, EGRESS),
        (names.TRACE_FROM_LXC, KNOWN | REPLY, INGRESS),
        (names.TRACE_TO_STACK, KNOWN, EGRESS),
        (names.TRACE_FROM_NETWORK, KNOWN, INGRESS),
        (names.TRACE_TO_PROXY, KNOWN, UNKNOWN),
        (names.TRACE_FROM_LXC, 0, UNKNOWN),  # conntrack did not know the connection
        (names.TRACE_FROM_LXC, REPLY, UNKNOWN),
        (200, KNOWN, UNKNOWN),
    ],
)
def test_trace_rules(point: int, flags: int, expected: int) -> None:
    assert traffic_direction(names.EVENT_TRACE, point, flags, SERVER.id, 0, False) == expected


def test_trace_on_a_node_device_has_no_direction() -> None:
    assert traffic_direction(names.EVENT_TRACE, names.TRACE_TO_NETWORK, KNOWN, 0, 0, False) == UNKNOWN


def test_drop_rules() -> None:
    assert traffic_direction(names.EVENT_DROP, 133, 0, CLIENT.id, 0, True) == EGRESS
    assert traffic_direction(names.EVENT_DROP, 133, 0, CLIENT.id, 0, False) == INGRESS
    assert traffic_direction(names.EVENT_DROP, 3, events.F_KERNEL_DROP, 0, 0, False) == UNKNOWN


def test_policy_verdict_rules() -> None:
    directions = [traffic_direction(names.EVENT_POLICY_VERDICT, 0, 0, 1, flags, False) for flags in range(4)]
    assert directions == [UNKNOWN, INGRESS, EGRESS, UNKNOWN]
    assert traffic_direction(names.EVENT_POLICY_VERDICT, 0, 0, 1, 0b111_001, False) == INGRESS


def test_other_event_types_have_no_direction() -> None:
    assert traffic_direction(names.EVENT_LOST, 0, KNOWN, 1, 1, True) == UNKNOWN


def test_one_record_and_a_batch_agree_on_every_combination() -> None:
    combos = list(
        itertools.product(
            [names.EVENT_DROP, names.EVENT_TRACE, names.EVENT_POLICY_VERDICT, 7],
            [*range(14), 133, 255],
            range(8),  # the reply bits
            [0, CLIENT.id],
            range(4),
            [False, True],
        )
    )
    records = np.zeros(len(combos), dtype=events.event_dtype())
    records["type"] = [c[0] for c in combos]
    records["subtype"] = [c[1] for c in combos]
    records["flags"] = [c[2] << 1 for c in combos]  # F_REPLY and F_REPLY_KNOWN are bits 1 and 2
    records["ep_id"] = [c[3] for c in combos]
    records["policy_flags"] = [c[4] for c in combos]
    source_ids = np.array([CLIENT.id if c[5] else 0 for c in combos])
    batch = traffic_directions(records, source_ids)
    one_by_one = [
        traffic_direction(t, s, f << 1, ep, p, ep != 0 and source_is_ep) for t, s, f, ep, p, source_is_ep in combos
    ]
    assert batch.tolist() == one_by_one


def test_reply_states() -> None:
    records = np.zeros(4, dtype=events.event_dtype())
    records["flags"] = [0, KNOWN, KNOWN | REPLY, REPLY]
    assert reply_states(records).tolist() == [REPLY_UNKNOWN, NOT_REPLY, IS_REPLY, REPLY_UNKNOWN]


def test_decoder_and_batch_agree_for_drops() -> None:
    """Drops need the endpoint that owns the source address: the decoder and the index must agree on it."""
    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"i")
    index = index_of(registry.snapshot)
    drops = np.concatenate(
        [
            record(tcp4(), type=names.EVENT_DROP, verdict=names.VERDICT_DROPPED, ep_id=ep)
            for ep in (CLIENT.id, SERVER.id, 0)
        ]
    )
    batch = traffic_directions(drops, index.ids[index.entries_for(drops, "src")])
    assert batch.tolist() == [decoder.decode(r, 0).traffic_direction for r in drops] == [EGRESS, INGRESS, UNKNOWN]
