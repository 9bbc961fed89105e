"""The map's state and layout on flows made here: which edge a flow counts on, boxes that keep their place as
traffic changes, what does not fit folded into `+N more`, and the Graphviz text read back."""

from __future__ import annotations

import re

from map_flows import flow, response
from rich.console import Console

from flowscope.api.flow import flow_pb2
from flowscope.cli.map import export
from flowscope.cli.map.frame import frame
from flowscope.cli.map.graph import MapSnapshot, MapTable
from flowscope.cli.map.layout import SPARE, Memory, arrange
from flowscope.cli.map.render import Picture, draw

NOW = 1_800_000_000.0


def table_of(*flows: flow_pb2.Flow, by: str = "app") -> MapTable:
    table = MapTable(by, clock=lambda: NOW)
    for made in flows:
        table.add(response(made))
    return table


def everything(snapshot: MapSnapshot, height: int = 60) -> dict[str, tuple[int, int]]:
    """Each node's (column, first line) with every node and edge shown."""
    layout = arrange(snapshot, range(len(snapshot.nodes)), range(len(snapshot.edges)), height)
    return {snapshot.nodes[node].full: (p.column, p.top) for node, p in layout.placed.items()}


def edges(snapshot: MapSnapshot) -> set[tuple[str, str, str]]:
    return {(snapshot.nodes[e.source].full, snapshot.nodes[e.destination].full, e.protocol) for e in snapshot.edges}


def test_a_flow_counts_on_one_edge_replies_turned_around_services_as_the_entry() -> None:
    table = table_of(
        flow("default/client", "default/server", 9000, NOW - 1),
        flow("default/server", "default/client", 9000, NOW - 1, reply=True),
        flow("default/client", "world", 53, NOW - 1, udp=True, service="kube-system/kube-dns"),
        flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True, service="kube-system/kube-dns"),
    )
    snapshot = table.map_snapshot()
    assert edges(snapshot) == {
        ("default/client", "default/server", "TCP/9000"),
        ("default/client", "svc:kube-system/kube-dns", "UDP/53"),
        ("svc:kube-system/kube-dns", "kube-system/dns", "UDP/53"),
    }
    (tcp,) = [i for i, e in enumerate(snapshot.edges) if e.protocol == "TCP/9000"]
    assert snapshot.total[tcp] == 2  # the reply counts in its connection's edge


def test_a_flow_to_the_service_address_with_the_backends_identity_is_the_client_to_service_leg() -> None:
    """The datapath gives the service's address the chosen backend's identity, so the agent names it by that
    identity (namespace and labels) but no pod owns the address: the flow has not reached a backend yet."""
    to_address = flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True, service="kube-system/kube-dns")
    to_address.destination.pod_name = ""
    answer = flow("kube-system/dns", "default/client", 53, NOW - 1, udp=True, reply=True)
    answer.source.pod_name = ""
    answer.source_service.CopyFrom(flow_pb2.Service(namespace="kube-system", name="kube-dns"))
    client = to_address.source.identity
    for by, box in (("app", "default/client"), ("identity", f"default/identity {client}"), ("pod", "default/client-1")):
        assert edges(table_of(to_address, answer, by=by).map_snapshot()) == {
            (box, "svc:kube-system/kube-dns", "UDP/53")
        }


def test_adding_edges_moves_no_existing_node() -> None:
    base = [
        flow("default/client", "default/server", 9000, NOW - 2),
        flow("default/client", "kube-system/dns", 53, NOW - 2, udp=True),
        flow("web/web", "default/server", 9000, NOW - 2),
    ]
    before = everything(table_of(*base).map_snapshot())
    # A new source and a new destination, in namespaces old and new: appended, nothing moves.
    grown = table_of(*base, flow("world", "web/web", 80, NOW - 1), flow("web/web", "other/db", 5432, NOW - 1))
    after = everything(grown.map_snapshot())
    assert {name: after[name] for name in before} == before
    assert set(after) - set(before) == {"(world)", "other/db"}


def test_an_existing_box_that_gains_an_edge_keeps_its_column_and_order() -> None:
    base = [flow("default/client", "default/server", 9000, NOW - 2), flow("web/web", "default/db", 1, NOW - 2)]
    before = everything(table_of(*base).map_snapshot())
    after = everything(table_of(*base, flow("default/client", "default/db", 5432, NOW - 1)).map_snapshot())
    assert {name: after[name][0] for name in before} == {name: place[0] for name, place in before.items()}
    assert sorted(before, key=lambda name: before[name]) == sorted(before, key=lambda name: after[name])


def test_what_does_not_fit_is_folded_into_more_the_quietest_first() -> None:
    flows = [flow(f"ns{index}/app{index}", "default/server", 80, NOW - 1) for index in range(40)]
    flows += [flow("ns0/app0", "default/server", 80, NOW - 1) for _ in range(50)]  # the busiest source
    snapshot = table_of(*flows).map_snapshot()
    layout = arrange(snapshot, range(len(snapshot.nodes)), range(len(snapshot.edges)), 20)
    assert layout.height <= 20
    shown = {snapshot.nodes[node].full for node in layout.placed}
    assert "ns0/app0" in shown and "default/server" in shown
    _, folded = layout.more[0]
    assert folded == 40 - sum(1 for name in shown if name.startswith("ns"))
    console = Console(width=120)
    with console.capture() as capture:
        console.print(frame(snapshot, None, "test", "app", 120, 24))
    assert re.search(r"^  \+\d+ more$", capture.get(), re.MULTILINE)  # the screen folds its own share


def test_drops_are_red_and_their_share_is_shown() -> None:
    table = table_of(
        flow("default/client", "default/server", 9000, NOW - 1),
        flow("default/client", "default/server", 9000, NOW - 1, verdict=flow_pb2.DROPPED),
    )
    console = Console(width=120, force_terminal=True, color_system="standard")
    with console.capture() as capture:
        console.print(frame(table.map_snapshot(), None, "test", "app", 120, 24))
    text = capture.get()
    assert re.search(r"\x1b\[1;31m[^\x1b]*TCP/9000 [0-9.]+/s 50% dropped", text), text


def test_dot_reads_back_as_the_edges() -> None:
    snapshot = table_of(
        flow("default/client", "default/server", 9000, NOW - 1),
        flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True, verdict=flow_pb2.DROPPED),
        flow("world", "web/web", 80, NOW - 1),
    ).map_snapshot()
    text = export.dot(snapshot)
    assert text.startswith("digraph flowscope {") and text.rstrip().endswith("}")
    found = set(re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="(\S+) ', text, re.MULTILINE))
    assert found == edges(snapshot)
    assert re.search(r'"default/client" -> "kube-system/dns" \[label="UDP/53 [^"]*100% dropped", color=red', text)
    assert re.search(r'subgraph "cluster_default" \{\n    label="default";\n    "default/client"', text)


def boxes_on_screen(picture: Picture, names: list[str]) -> dict[str, tuple[int, int]]:
    """Where each box's name is written on screen: (column of characters, line)."""
    found: dict[str, tuple[int, int]] = {}
    for y, line in enumerate(picture.lines):
        for name in names:
            match = re.search(rf"(?:│ |^  ){re.escape(name)}(?= |$)", line.plain)
            if match and name not in found:
                found[name] = (match.end() - len(name), y)
    return found


def test_boxes_stay_put_on_screen_as_edges_and_boxes_are_added() -> None:
    # Each step adds what traffic adds: edges from boxes already drawn (client gains two, web and batch one),
    # new boxes in new namespaces, a new column, rates that grow by a digit and a drop share that appears. A live
    # map's memory keeps every box drawn before on the same line and column of characters. (A new box in a
    # namespace box that is already drawn goes inside it, at its foot, and moves what is below that box.)
    steps = [
        [flow("default/client", "default/server", 9000, NOW - 1), flow("world", "web/web", 80, NOW - 1)],
        [flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True)],
        [flow("default/client", "web/web", 80, NOW - 1), flow("jobs/batch", "default/server", 9000, NOW - 1)],
        [flow("web/web", "other/db", 5432, NOW - 1), flow("world", "default/server", 443, NOW - 1)],
        [flow("default/client", "default/server", 9000, NOW - 1) for _ in range(150)],
        [flow("jobs/batch", "kube-system/dns", 53, NOW - 1, udp=True)],
        [flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True, verdict=flow_pb2.DROPPED)],
    ]
    table = MapTable(clock=lambda: NOW)
    memory = Memory()
    seen: dict[str, tuple[int, int]] = {}
    for step, flows in enumerate(steps):
        for made in flows:
            table.add(response(made))
        snapshot = table.map_snapshot()
        picture = draw(snapshot, range(len(snapshot.nodes)), range(len(snapshot.edges)), 160, 40, memory=memory)
        names = [node.label for node in snapshot.nodes]
        now = boxes_on_screen(picture, names)
        assert set(now) == set(names), "\n".join(line.plain for line in picture.lines)
        moved = {name: (seen[name], now[name]) for name in seen if now[name] != seen[name]}
        assert not moved, f"step {step}: {moved}\n" + "\n".join(line.plain for line in picture.lines)
        seen = now


def test_a_box_past_its_spare_lines_pushes_only_what_is_below_it() -> None:
    table = table_of(
        flow("default/client", "default/server", 1, NOW - 1), flow("default/other", "default/server", 1, NOW - 1)
    )
    memory = Memory()
    snapshot = table.map_snapshot()
    arrange(snapshot, range(len(snapshot.nodes)), range(len(snapshot.edges)), 40, memory=memory)
    before = dict(memory.tops)
    for port in range(2, 2 + SPARE + 1):  # one edge more than its spare lines hold
        table.add(response(flow("default/client", "default/server", port, NOW - 1)))
    snapshot = table.map_snapshot()
    layout = arrange(snapshot, range(len(snapshot.nodes)), range(len(snapshot.edges)), 40, memory=memory)
    client, other = (snapshot.nodes.index(node) for node in snapshot.nodes if node.name in ("client", "other"))
    assert layout.placed[client].top == before[client] and layout.placed[client].height == 2 + SPARE
    assert layout.placed[other].top == layout.placed[client].top + layout.placed[client].height + SPARE


def on_the_link(made: flow_pb2.Flow, source: str, destination: str, icmp: bool = True) -> flow_pb2.Flow:
    """`made` between these addresses (none: ARP), an ICMPv6 message unless told otherwise."""
    made.IP.source, made.IP.destination = source, destination
    if not source:
        made.ClearField("IP")
    if icmp or not source:
        made.l4.Clear()
    if icmp and source:
        made.l4.ICMPv6.type = 133
    return made


def test_a_links_own_traffic_is_two_boxes_whatever_its_addresses() -> None:
    flows = []
    for index in range(1, 6):  # each pod's interface solicits the routers from its own link-local address
        solicitation = on_the_link(flow("world", "world", 0, NOW - 1), f"fe80::{index}", "ff02::2")
        solicitation.source.identity = 1000 + index  # the pod's identity, but no pod owns the address
        flows.append(solicitation)
    flows += [
        on_the_link(flow("default/client", "world", 0, NOW - 1), "fd00::11", "fe80::1"),  # a neighbour advertisement
        on_the_link(flow("default/client", "world", 5353, NOW - 1, udp=True), "10.0.0.1", "224.0.0.251", False),
        on_the_link(flow("world", "world", 0, NOW - 1), "", ""),  # ARP
        flow("world", "web/web", 80, NOW - 1),  # the world stays the world
    ]
    snapshot = table_of(*flows).map_snapshot()
    assert {node.full for node in snapshot.nodes} == {
        "(link-local)",
        "(multicast)",
        "default/client",
        "(world)",
        "web/web",
    }
    assert edges(snapshot) == {
        ("(link-local)", "(multicast)", "ICMPv6"),
        ("default/client", "(link-local)", "ICMPv6"),
        ("default/client", "(multicast)", "UDP/5353"),
        ("(link-local)", "(link-local)", "ARP"),
        ("(world)", "web/web", "TCP/80"),
    }


def test_a_pods_link_local_end_named_by_its_identity_is_the_pods_box() -> None:
    """The agent names a pod's fe80:: end by the identity the datapath gave (Hubble's ResolveEndpoint): the pod's
    namespace and labels, no pod name. By app or identity that is the pod's box; by pod there is none to name."""
    solicitation = on_the_link(flow("default/client", "world", 0, NOW - 1), "fe80::11", "ff02::2")
    solicitation.source.pod_name = ""
    for by, box in (("app", "default/client"), ("identity", f"default/identity {solicitation.source.identity}")):
        assert edges(table_of(solicitation, by=by).map_snapshot()) == {(box, "(multicast)", "ICMPv6")}
    assert edges(table_of(solicitation, by="pod").map_snapshot()) == {("(link-local)", "(multicast)", "ICMPv6")}
