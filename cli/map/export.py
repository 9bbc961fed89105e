"""The map as a file to share: SVG and HTML through rich's recording console (what the terminal shows, as
the terminal shows it), PNG from that SVG through rsvg-convert (Debian's librsvg2-bin) when it is installed,
and Graphviz text for people who lay graphs out their own way."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

from rich.console import Console, Group

from flowscope.cli.errors import CliError
from flowscope.cli.map.graph import MapSnapshot
from flowscope.cli.map.render import label

PNG_CONVERTER = "rsvg-convert"


def recorded(picture: Group, width: int) -> Console:
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(picture)
    return console


def svg(picture: Group, width: int) -> str:
    """rich's SVG, told to keep its whitespace: its runs of spaces are no-break spaces, which rsvg-convert
    (and any renderer following XML's default) still collapses, moving every box after them to the left."""
    return recorded(picture, width).export_svg(title="flowscope map").replace("<svg ", '<svg xml:space="preserve" ', 1)


def write_svg(picture: Group, width: int, path: Path) -> None:
    path.write_text(svg(picture, width))


def write_html(picture: Group, width: int, path: Path) -> None:
    path.write_text(recorded(picture, width).export_html(inline_styles=True))


def write_png(picture: Group, width: int, path: Path) -> None:
    converter = shutil.which(PNG_CONVERTER)
    if converter is None:
        raise CliError(f"--png needs {PNG_CONVERTER} (Debian: apt install librsvg2-bin); --svg works without it")
    done = subprocess.run(
        [converter, "--format", "png", "--output", str(path)], input=svg(picture, width).encode(), check=False
    )
    if done.returncode != 0:
        raise CliError(f"{PNG_CONVERTER} could not turn the map into {path} (exit {done.returncode})")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(snapshot: MapSnapshot) -> str:
    """Graphviz: a cluster per namespace, an edge per edge with its label, red for drops, orange for L7 errors."""
    lines = ["digraph flowscope {", "  rankdir=LR;", "  node [shape=box];"]
    namespaces: dict[str, list[int]] = {}
    for index, node in enumerate(snapshot.nodes):
        namespaces.setdefault(node.namespace, []).append(index)
    for namespace, members in namespaces.items():
        indent = "  "
        if namespace:
            lines.append(f"  subgraph {_quoted('cluster_' + namespace)} {{")
            lines.append(f"    label={_quoted(namespace)};")
            indent = "    "
        for index in members:
            node = snapshot.nodes[index]
            shape = ", shape=ellipse" if node.kind == "service" else ""
            lines.append(f"{indent}{_quoted(node.full)} [label={_quoted(node.label)}{shape}];")
        if namespace:
            lines.append("  }")
    for index, edge in enumerate(snapshot.edges):
        source, destination = snapshot.nodes[edge.source].full, snapshot.nodes[edge.destination].full
        attributes = f"label={_quoted(label(snapshot, index))}"
        if snapshot.drop_share[index] > 0:
            attributes += ", color=red, fontcolor=red"
        elif snapshot.error_share[index] > 0:
            attributes += ", color=orange, fontcolor=orange"
        lines.append(f"  {_quoted(source)} -> {_quoted(destination)} [{attributes}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
