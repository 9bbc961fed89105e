"""The keys of `flowscope map`, driven one by one: selection walks the nodes on screen, Enter focuses one and
Esc goes back, `/` hands every key to top's filter line until Enter or Esc, p pauses on one snapshot, q quits."""

from __future__ import annotations

from map_flows import flow, response

from flowscope.cli.map.controls import MapControls
from flowscope.cli.map.frame import frame
from flowscope.cli.map.graph import MapSnapshot, MapTable
from flowscope.cli.top.controls import Action

NOW = 1_800_000_000.0


def drawn(controls: MapControls, snapshot: MapSnapshot) -> str:
    """Draw a frame (which tells the controls what is on screen) and return its header."""
    group = frame(snapshot, controls, "test", "app", 150, 40)
    return str(group.renderables[0])


def test_keys_select_focus_filter_pause_and_quit() -> None:
    table = MapTable(clock=lambda: NOW)
    for made in (
        flow("default/client", "default/server", 9000, NOW - 1),
        flow("default/client", "kube-system/dns", 53, NOW - 1, udp=True),
        flow("world", "web/web", 80, NOW - 1),
    ):
        table.add(response(made))
    snapshot = table.map_snapshot()
    checked: list[str] = []
    controls = MapControls("", lambda text: checked.append(text) or (None if "--" in text else "bad"))
    drawn(controls, snapshot)
    assert controls.order and controls.selected == controls.order[0]
    controls.handle("j")
    assert controls.selected == controls.order[1]
    controls.handle("k")
    controls.handle("k")  # stays on the first
    assert controls.selected == controls.order[0]
    controls.handle("l")  # the first node of the next column
    assert controls.columns[controls.selected] == 1
    controls.handle("h")
    client = snapshot.nodes.index(next(node for node in snapshot.nodes if node.name == "client"))
    while controls.selected != client:
        controls.handle("j")
    controls.handle("enter")
    assert controls.focus == client
    assert "focus: default/client" in drawn(controls, snapshot)
    assert set(controls.order) == {
        client,
        *(n for n, node in enumerate(snapshot.nodes) if node.name in ("server", "dns")),
    }
    controls.handle("esc")
    controls.handle("j")  # before the whole map is drawn again: the next node of the whole map, not of the focus
    whole = drawn(controls, snapshot)
    assert controls.focus is None and "focus" not in whole
    assert controls.selected == controls.order[controls.order.index(client) + 1]
    # `/` edits top's filter line: letters go to it, not to the map, until Enter applies a valid filter.
    assert controls.handle("/") is None and controls.filter.editing is not None
    for key in "--port 53":
        assert controls.handle(key) is None
    assert controls.focus is None and checked[-1] == "--port 53"
    assert controls.handle("enter") is Action.FILTER and controls.filter.filter_text == "--port 53"
    controls.handle("p")
    first = controls.view(table.map_snapshot)
    table.add(response(flow("default/client", "default/other", 1, NOW - 1)))
    assert controls.view(table.map_snapshot) is first  # paused: the same snapshot
    controls.handle("p")
    assert len(controls.view(table.map_snapshot).edges) == len(first.edges) + 1
    assert controls.handle("q") is Action.QUIT
