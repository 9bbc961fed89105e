"""The decoder's shapes: a flow made from the shape of an earlier flow is the flow made afresh, and the shapes go
with the registry snapshot (a pod's new labels show in the very next flow)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from records import CLIENT, IFINDEX, LAB, SERVER, TS, lab_registry, record, tcp4, udp4
from test_parser_wire import corpus

from flowscope.api.flow import flow_pb2
from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
from flowscope.common import names
from flowscope.observer.l7.names import NameSets
from flowscope.observer.parser import FieldTree, FlowDecoder, compile_field_mask
from flowscope.observer.parser.fieldmask import keeps_whole, prune, restrict
from flowscope.observer.policy import RuleOrigin

MASKS = [
    None,
    list(HUBBLE_FIELD_MASK),
    ["time", "uuid", "l4", "flowscope", "source"],
    ["source.labels", "l4.TCP.source_port", "flowscope.packets", "time.nanos", "Summary", "ingress_allowed_by"],
    ["uuid", "event_type.sub_type", "verdict", "is_reply", "source_names", "egress_denied_by", "flowscope.policy_rule"],
]


class Rules:
    """A policy rule table: odd rules come from a policy, rules not divisible by 3 have a name."""

    def name(self, number: int) -> str | None:
        return f"rule-{number}" if number % 3 else None

    def origin(self, number: int) -> RuleOrigin | None:
        return (
            RuleOrigin(f"allow-{number}", "default", "CiliumNetworkPolicy", ("k8s:app=x",), 2) if number % 2 else None
        )


def decoder() -> FlowDecoder:
    made = FlowDecoder("node1", lab_registry(), b"shapes", {3: "NO_SOCKET"}, lambda at: f"kfree+0x{at:x}")
    made.rules = Rules()
    made.name_sets = NameSets()
    made.name_sets.intern(("web.svc.lab",))
    return made


# Every column the decoder reads, each given other values in copies of the corpus: a key that missed one would
# give some flow the shape of another.
COLUMNS = {
    "ts": 2**62,
    "type": 256,
    "subtype": 256,
    "flags": 256,
    "ifindex": 16,
    "len_cap": 100,
    "ep_id": 1003,
    "src_identity": 3,
    "dst_identity": 3,
    "ethertype": 2**16,
    "l4_proto": 256,
    "tcp_flags": 256,
    "sport": 2**16,
    "dport": 2**16,
    "trace_reason": 8,
    "verdict": 4,
    "policy_flags": 256,
    "drop_reason": 200,
    "tcp_flags_seen": 256,
    "packets": 2**32,
    "rule": 6,
    "bytes": 2**40,
    "location": 4,
    "src_names": 2,
    "dst_names": 2,
}


def records() -> np.ndarray:
    """Records that share shapes and differ in one column at a time, then ported flows and policy verdicts."""
    base = corpus()
    base = base[base["type"] != names.EVENT_LOST]
    rng = np.random.default_rng(15)
    copies = []
    for column, values in COLUMNS.items():
        for _ in range(3):
            copy = base.copy()
            copy[column] = rng.integers(0, values, len(copy))
            copies.append(copy)
    vni = base.copy()
    vni["vni"] = [bytes((0, 0, n)) for n in range(len(vni))]
    ported = [record(tcp4(sport=port, dport=65535 - port, flags=0x12)) for port in (0, 1, 300, 65535)]
    ported += [record(udp4(sport=port, dport=0)) for port in (0, 53, 40000)]
    ported += [record(tcp4(), type=names.EVENT_POLICY_VERDICT, rule=rule, verdict=1) for rule in range(6)]
    return np.concatenate([base, *copies, vni, *ported])


@pytest.mark.parametrize("mask", MASKS)
def test_a_flow_made_from_a_shared_shape_is_the_flow_made_afresh(mask: list[str] | None) -> None:
    fields = compile_field_mask(mask) if mask is not None else None
    warm = decoder()
    for seq, stored in enumerate(records()):
        fresh = decoder().decode(stored, seq, fields)
        assert warm.decode(stored, seq, fields).SerializeToString() == fresh.SerializeToString()
    assert len(warm._names.shapes) < len(records()) / 2  # the flows did share shapes


def test_a_pods_new_labels_show_in_the_next_flow() -> None:
    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"shapes")
    stored = record(tcp4(), ifindex=IFINDEX["lxc1001"])[0]
    assert list(decoder.decode(stored, 1).source.labels) == [
        "k8s:app=client",
        "k8s:io.kubernetes.pod.namespace=default",
    ]
    relabelled = replace(CLIENT, labels={"app": "client", "track": "canary"})
    nodes = (replace(LAB.nodes[0], labels={"zone": "b"}), *LAB.nodes[1:])
    registry.update(replace(LAB, nodes=nodes, endpoints=(relabelled, SERVER, *LAB.endpoints[2:])))
    registry.set_interface(IFINDEX["lxc1001"], "renamed0")
    flow = decoder.decode(stored, 2)
    assert list(flow.source.labels) == [
        "k8s:app=client",
        "k8s:io.kubernetes.pod.namespace=default",
        "k8s:track=canary",
    ]
    assert list(flow.node_labels) == ["zone=b"]
    assert flow.interface.name == "renamed0"
    assert flow.uuid == decoder.ids.uuid(2) and flow.time.ToNanoseconds() == TS


def test_shapes_are_bounded() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"shapes")
    batch = np.concatenate([record(udp4(), ifindex=index) for index in range(5000)])
    for seq, stored in enumerate(batch):
        decoder.decode(stored, seq)
    assert 0 < len(decoder._names.shapes) <= 4096


def test_a_mask_plan_for_some_fields_leaves_the_others() -> None:
    tree = compile_field_mask(["time", "source.labels", "l4"])
    own = restrict(tree, {"source", "uuid", "l4"})
    assert own == FieldTree(clear=("uuid",), below=(("source", tree.below[0][1]),))
    flow = flow_pb2.Flow(uuid="u", node_name="n", Summary="s")
    flow.source.pod_name = "p"
    flow.source.labels.append("k8s:a=b")
    flow.flowscope.aggregated = True
    prune(flow, own)
    assert flow == flow_pb2.Flow(
        node_name="n",
        Summary="s",
        source=flow_pb2.Endpoint(labels=["k8s:a=b"]),
        flowscope=flow_pb2.FlowscopeFlow(aggregated=True),
    )
    assert keeps_whole(None, "time") and keeps_whole(tree, "time") and keeps_whole(tree, "l4")
    assert not keeps_whole(tree, "source") and not keeps_whole(tree, "uuid")
    assert not keeps_whole(compile_field_mask(["time.nanos"]), "time")
