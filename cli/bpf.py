"""`flowscope bpf`: the datapath's programs and maps as the kernel holds them, node by node.

    flowscope bpf                 # per node: device -> tcx hook -> program -> tail-call map; then the maps
    flowscope bpf --stats 2s      # and each program's runs and average run time over 2 seconds
    flowscope bpf -o json         # one JSON document (by node when several agents answered)

The agent reads its own kernel objects (Control.GetDatapath), so this shows what is loaded and attached, not
what should be. Kernel BPF statistics cost every program run on the machine two clock reads: the agent switches
them on for the --stats window only, and off again when it ends (also when this command is stopped). Switching
them on needs CAP_SYS_ADMIN, which the deployed agent runs without: it then refuses --stats and says why.
A tail-called stage runs inside its entry program's run, so the entry program's time includes its stages'.

With no --server, a lab that is up (the lab named `lab`, or --lab NAME) has every one of its agents asked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable

from google.protobuf import json_format
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from flowscope.api.control import control_pb2
from flowscope.cli.agent_calls import add_agent_target_flags, control_calls
from flowscope.common.durations import parse_duration

MAX_WINDOW_S = 60.0
WIDE = 200  # columns when stdout is not a terminal: a pinned path is not wrapped in a pipe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bpf",
        help="the datapath's programs, hooks, tail calls and maps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--stats",
        metavar="DURATION",
        type=_window,
        default=0.0,
        help=f"take kernel BPF statistics over this window (e.g. 2s; at most {MAX_WINDOW_S:g}s), switched on only "
        "for it",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="format (text)")
    add_agent_target_flags(parser)
    parser.set_defaults(run=run)


def _window(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds <= MAX_WINDOW_S:
        raise argparse.ArgumentTypeError(f"{text!r}: a window above 0 and at most {MAX_WINDOW_S:g}s")
    return seconds


def run(args: argparse.Namespace) -> int:
    request = control_pb2.GetDatapathRequest()
    if args.stats:
        request.stats_window.FromNanoseconds(round(args.stats * 1e9))
    answers = control_calls(args, lambda stub, t: stub.GetDatapath(request, timeout=t + args.stats))
    if args.output == "json":
        found = {node: _as_dict(inventory) for node, inventory in answers.items()}
        print(json.dumps(found if len(found) > 1 else next(iter(found.values())), indent=2))
        return 0
    console = Console(highlight=False, width=None if sys.stdout.isatty() else WIDE)
    for node, inventory in answers.items():
        console.print(render(inventory, node or inventory.node))
    return 0


def _as_dict(inventory: control_pb2.DatapathInventory) -> dict:
    return json_format.MessageToDict(
        inventory, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# --- rendering ---


def render(inventory: control_pb2.DatapathInventory, node: str) -> RenderableType:
    """A tree of the node's hooks (device -> hook -> program -> tail-call map), the tail-call maps with their
    slots, the programs on no hook, and a table of the maps."""
    programs = {p.id: p for p in inventory.programs}
    maps = {m.id: m for m in inventory.maps}
    stats = inventory.HasField("stats_window")
    window = f", stats over {inventory.stats_window.ToTimedelta().total_seconds():g}s" if stats else ""
    tree = Tree(Text.assemble((node or "agent", "bold"), f"{window}"))
    on_hooks = Counter(program_id for hook in inventory.hooks for program_id in hook.program_ids)
    for device, hooks in _by_device(inventory.hooks):
        branch = tree.add(Text.assemble((device, "bold"), f" (ifindex {hooks[0].ifindex})"))
        for hook in hooks:
            for program_id in hook.program_ids:
                program = _program(programs.get(program_id), stats)
                if stats and on_hooks[program_id] > 1:  # one program on every endpoint: its runs are theirs all
                    program.append(f" (on its {on_hooks[program_id]} hooks together)", style="dim")
                leaf = branch.add(Text.assemble(f"{hook.direction:<8}", program))
                for called in _tail_call_maps(programs.get(program_id), maps):
                    leaf.add(f"tail calls: {called.name} (map {called.id})")
    for prog_array in (m for m in inventory.maps if m.type == "prog_array"):
        branch = tree.add(
            Text.assemble(("tail-call map ", "bold"), (prog_array.name, "bold"), f" ({_slots_used(prog_array)})")
        )
        for slot in prog_array.slots:
            branch.add(Text.assemble(f"slot {slot.slot:<3}", _slot(slot, programs, stats)))
    others = [p for p in inventory.programs if p.id not in on_hooks and not _in_a_slot(p.id, inventory.maps)]
    if others:
        branch = tree.add(Text("other programs (tracepoints, test runs)", style="bold"))
        for other in others:
            branch.add(_program(other, stats))
    return Group(tree, maps_table(inventory.maps), Text(""))


def _by_device(hooks: Iterable[control_pb2.TcxHook]) -> list[tuple[str, list[control_pb2.TcxHook]]]:
    grouped: dict[str, list[control_pb2.TcxHook]] = {}
    for hook in hooks:
        grouped.setdefault(hook.device, []).append(hook)
    return list(grouped.items())


def _program(program: control_pb2.BpfProgram | None, stats: bool) -> Text:
    if program is None:
        return Text("(gone)", style="dim")
    if not program.type:
        return Text(f"#{program.id} (not the agent's, which may not read it without CAP_SYS_ADMIN)", style="yellow")
    text = Text.assemble((program.name, "cyan"), f" #{program.id} {program.type}")
    if not program.held:
        text.append(" (not the agent's)", style="yellow")
    if stats:
        text.append(f"  {_runs(program)}")
    return text


def _runs(program: control_pb2.BpfProgram) -> str:
    if not program.run_count:
        return "0 runs"
    return f"{program.run_count:,} runs, {program.run_time_ns / program.run_count:,.0f} ns avg"


def _slot(slot: control_pb2.TailCallSlot, programs: dict[int, control_pb2.BpfProgram], stats: bool) -> Text:
    if not slot.program_id:
        return Text(f"empty (should hold {slot.stage})", style="red")
    program = programs.get(slot.program_id)
    text = _program(program, stats=False)
    if slot.stage and program is not None and not slot.stage.startswith(program.name):
        text.append(f" (calls.h puts {slot.stage} here)", style="red")
    if stats:
        text.append("  runs within its caller's", style="dim")
    return text


def _tail_call_maps(
    program: control_pb2.BpfProgram | None, maps: dict[int, control_pb2.BpfMap]
) -> list[control_pb2.BpfMap]:
    if program is None:
        return []
    return [maps[i] for i in program.map_ids if i in maps and maps[i].type == "prog_array"]


def _in_a_slot(program_id: int, maps: Iterable[control_pb2.BpfMap]) -> bool:
    return any(slot.program_id == program_id for m in maps for slot in m.slots)


def _slots_used(prog_array: control_pb2.BpfMap) -> str:
    return f"{prog_array.used} of {prog_array.max_entries} slots, map {prog_array.id}"


def maps_table(maps: Iterable[control_pb2.BpfMap]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        ("MAP", "left"),
        ("ID", "right"),
        ("TYPE", "left"),
        ("KEY", "right"),
        ("VALUE", "right"),
        ("MAX", "right"),
        ("USED", "right"),
        ("PINNED", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in maps:
        table.add_row(
            m.name, str(m.id), m.type, str(m.key_size), str(m.value_size), f"{m.max_entries:,}", _fill(m), m.pinned
        )
    return table


def _fill(m: control_pb2.BpfMap) -> str:
    """Entries in use (with the share of the maximum), bytes unread of a ring buffer, or `-` for an array."""
    if not m.counted:
        return "-"
    if m.type == "ringbuf":
        return f"{m.used:,} B unread"
    share = m.used / m.max_entries if m.max_entries else 0.0
    return f"{m.used:,} ({share:.1%})" if share >= 0.001 or not m.used else f"{m.used:,} (<0.1%)"
