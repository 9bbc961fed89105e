"""node_labels: selectors over the observing node's labels, from the cluster metadata, followed as it changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from filter_cases import NAMES, RECORDS, select
from records import LAB, lab_registry

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.filters import Batch, FilterContext, compile_filters

ZONED = dataclasses.replace(
    LAB, nodes=tuple(dataclasses.replace(n, labels={"kubernetes.io/hostname": n.name, "zone": "a"}) for n in LAB.nodes)
)


@pytest.mark.parametrize(
    ("selectors", "matches"),
    [
        (["kubernetes.io/hostname=node1"], True),
        (["kubernetes.io/hostname=node2"], False),
        (["kubernetes.io/hostname=node2", "zone in (a,b)"], True),
        (["zone=a,kubernetes.io/hostname!=node1"], False),
        (["!zone"], False),
    ],
)
def test_selects_by_the_labels_of_the_node(selectors: list[str], matches: bool) -> None:
    registry = lab_registry(cluster=ZONED)
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot)
    assert select([pb.FlowFilter(node_labels=selectors)], ctx=ctx) == (NAMES if matches else [])


def test_follows_the_registry_when_the_node_is_relabelled() -> None:
    registry = lab_registry()
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot, snapshots=lambda: registry.snapshot)
    predicate = compile_filters([pb.FlowFilter(node_labels=["zone=a"])], [], ctx)  # once, as a follow stream
    batch = Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64))
    assert not predicate(batch).any()
    registry.update(ZONED)
    assert predicate(batch).all()
