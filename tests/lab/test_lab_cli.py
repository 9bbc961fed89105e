"""`flowscope lab` arguments: the command registers like the others and picks its runner."""

from __future__ import annotations

import argparse

from flowscope.cli import lab as lab_cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flowscope")
    lab_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_up_defaults() -> None:
    args = parse("lab", "up")
    assert (args.name, args.nodes, args.traffic, args.agent) == ("lab", 1, True, True)
    assert args.run is lab_cli.run_up


def test_up_flags() -> None:
    args = parse("lab", "up", "--name", "demo", "--nodes", "3", "--no-traffic", "--no-agent")
    assert (args.name, args.nodes, args.traffic, args.agent) == ("demo", 3, False, False)


def test_down_and_status() -> None:
    assert parse("lab", "down", "--name", "x").run is lab_cli.run_down
    assert parse("lab", "status").run is lab_cli.run_status


def test_bad_names_are_an_error_not_a_crash() -> None:
    assert lab_cli.main(["status", "--name", "Bad_Name"]) == 1
    assert lab_cli.main(["up", "--name", "x", "--nodes", "0"]) == 1
