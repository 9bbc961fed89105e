"""Printing GetFlowsResponses in hubble's output formats: compact, dict, json(pb) and table."""

from __future__ import annotations

from flowscope.cli.printer.base import FlowPrinter, PrintOptions
from flowscope.cli.printer.compact import CompactPrinter
from flowscope.cli.printer.dictfmt import DictPrinter
from flowscope.cli.printer.jsonpb import JsonPrinter
from flowscope.cli.printer.sink import Sink
from flowscope.cli.printer.table import TablePrinter

PRINTERS: dict[str, type[FlowPrinter]] = {
    "compact": CompactPrinter,
    "dict": DictPrinter,
    "json": JsonPrinter,
    "jsonpb": JsonPrinter,
    "table": TablePrinter,
    "tab": TablePrinter,
}


def make_printer(output: str, out: Sink, err: Sink, options: PrintOptions) -> FlowPrinter:
    """The printer for an -o value (already checked by the flag's choices)."""
    return PRINTERS[output](out, err, options)


__all__ = ["FlowPrinter", "PrintOptions", "Sink", "make_printer"]
