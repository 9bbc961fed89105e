"""The keys of `flowscope top`: what each changes (sort, freeze, pause, scroll, the filter line) and how a
terminal's bytes become keys."""

from __future__ import annotations

import os
import pty
import termios

import pytest
import top_samples

from flowscope.cli.main import build_parser
from flowscope.cli.top.controls import Action, Controls
from flowscope.cli.top.keys import RawTerminal, decode, read_keys
from flowscope.cli.top.livefilter import LiveFilter
from flowscope.cli.top.state import FlowTable

NOW = 1_800_000_000.0


def controls(text: str = "") -> Controls:
    return Controls(text, LiveFilter(build_parser().parse_args(["top"])).error)


def table_with(*names: str, repeats: tuple[int, ...] | None = None) -> FlowTable:
    table = FlowTable(clock=lambda: NOW)
    for index, name in enumerate(names):
        for _ in range(repeats[index] if repeats else 1):
            table.add_flow(top_samples.at(top_samples.connection(name, "server", 80), NOW - 0.5))
    return table


def shown(table: FlowTable, keys: Controls) -> list[str]:
    snapshot, order = keys.view(table.snapshot)
    return [snapshot.keys[row].source.removeprefix("default/") for row in order]


def press(keys: Controls, *presses: str) -> list[Action | None]:
    return [keys.handle(key) for key in presses]


def test_sort_keys_and_the_rate_window() -> None:
    keys = controls()
    assert (keys.sort, keys.sort_label) == ("rate", "rate 10s")
    press(keys, "r")
    assert keys.sort_label == "rate 40s"
    press(keys, "r")
    assert keys.sort_label == "rate 2s"
    press(keys, "l")
    assert keys.sort_label == "last"
    press(keys, "d", "t")
    assert keys.sort == "total"


def test_freeze_keeps_the_order_and_puts_new_rows_last() -> None:
    table = table_with("a", "b", repeats=(1, 3))
    keys = controls()
    assert shown(table, keys) == ["b", "a"]
    press(keys, "f")
    assert shown(table, keys) == ["b", "a"]
    for _ in range(5):  # a overtakes b, and c arrives busier than both
        table.add_flow(top_samples.at(top_samples.connection("a", "server", 80), NOW - 0.5))
    for _ in range(9):
        table.add_flow(top_samples.at(top_samples.connection("c", "server", 80), NOW - 0.5))
    assert shown(table, keys) == ["b", "a", "c"]
    press(keys, "f")
    assert shown(table, keys) == ["c", "a", "b"]


def test_choosing_a_sort_unfreezes() -> None:
    keys = controls()
    press(keys, "f")
    assert keys.freeze
    press(keys, "t")
    assert not keys.freeze


def test_pause_keeps_showing_one_snapshot_while_counting_goes_on() -> None:
    table = table_with("a")
    keys = controls()
    press(keys, "p")
    paused, _ = keys.view(table.snapshot)
    table.add_flow(top_samples.at(top_samples.connection("b", "server", 80), NOW - 0.5))
    again, _ = keys.view(table.snapshot)
    assert again is paused and len(again) == 1
    press(keys, "p")
    assert len(keys.view(table.snapshot)[0]) == 2


def test_scrolling_stays_within_the_rows() -> None:
    table = table_with(*(f"c{index:02}" for index in range(30)))
    keys = controls()
    keys.page = 10
    keys.view(table.snapshot)
    press(keys, "down", "down")
    assert keys.offset == 2
    press(keys, "pgdn", "pgdn", "pgdn")
    assert keys.offset == 20  # the last page: rows 21-30
    press(keys, "up", "home")
    assert keys.offset == 0
    press(keys, "end")
    assert keys.offset == 20
    press(keys, "pgup", "pgup", "pgup")
    assert keys.offset == 0
    assert shown(table, keys)[:2] == ["c00", "c01"]


def test_the_filter_is_checked_at_every_key() -> None:
    keys = controls("--from-pod default/client")
    press(keys, "/")
    assert keys.editing is not None and keys.editing.text == "--from-pod default/client "
    assert keys.editing.error is None
    errors = []
    for char in "--verdict DROP":
        keys.handle(char)
        errors.append(keys.editing.error)
    assert errors[-1] == "argument --verdict: invalid --verdict value: DROP"
    assert errors[2] == "unrecognized arguments: --v"
    assert press(keys, "enter") == [None]  # refused while wrong
    assert keys.editing is not None
    press(keys, "P", "E", "D")
    assert keys.editing.error is None
    assert press(keys, "enter") == [Action.FILTER]
    assert keys.editing is None
    assert keys.filter_text == "--from-pod default/client --verdict DROPPED"


def test_editing_keys_and_escape() -> None:
    keys = controls()
    press(keys, "/", *"--ip 10.0.0.1", "ctrl-w")
    assert keys.editing is not None and keys.editing.text == "--ip "
    press(keys, "backspace", "backspace")
    assert keys.editing.text == "--i"
    press(keys, "q", "f", "p")  # letters are text while editing, not commands
    assert keys.editing.text == "--iqfp" and not keys.freeze and not keys.pause
    press(keys, "ctrl-u")
    assert keys.editing.text == ""
    press(keys, "esc")
    assert keys.editing is None and keys.filter_text == ""


def test_an_unchanged_filter_does_not_reconnect() -> None:
    keys = controls("--verdict DROPPED")
    assert press(keys, "/", "enter") == [None, None]


def test_quit() -> None:
    assert press(controls(), "q") == [Action.QUIT]
    assert press(controls(), "/", "ctrl-c") == [None, Action.QUIT]


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        (b"q", ["q"]),
        (b"/--ip 1", ["/", "-", "-", "i", "p", " ", "1"]),
        (b"\x1b[A\x1b[B\x1bOA", ["up", "down", "up"]),
        (b"\x1b[5~\x1b[6~", ["pgup", "pgdn"]),
        (b"\x1b[H\x1b[F\x1b[1~\x1b[4~", ["home", "end", "home", "end"]),
        (b"\x1b", ["esc"]),
        (b"\x1bq", ["esc", "q"]),
        (b"\r\n\x7f\x08\x15\x17\x03", ["enter", "enter", "backspace", "backspace", "ctrl-u", "ctrl-w", "ctrl-c"]),
        (b"\x1b[1;5A", []),  # a sequence this viewer has no use for is dropped whole
        ("é".encode(), ["é"]),
    ],
)
def test_decode(data: bytes, keys: list[str]) -> None:
    assert decode(data) == keys


def test_raw_terminal_gives_the_settings_back_after_an_exception() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), RawTerminal(slave):
            assert not termios.tcgetattr(slave)[3] & (termios.ECHO | termios.ICANON)
            os.write(master, b"\x1b[6~q")
            assert read_keys(slave, 1.0) == ["pgdn", "q"]
            raise RuntimeError("a bug while drawing")
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
