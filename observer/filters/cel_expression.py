"""experimental.cel_expression: a Common Expression Language test of the decoded flow, as Hubble evaluates it.

Hubble (docs/reference/hubble-api.md, "Wire rules") declares the flow as the variable `_flow` of type flow.Flow
in the container `flow`, so field names are the schema's (`_flow.l4.TCP.destination_port`) and enum values can
be named (`_flow.verdict == Verdict.DROPPED`). Expressions are type-checked against the schema when the request
is compiled: one that does not parse, names no field, compares across types (`destination_port == 9000` on a
uint32 needs `9000u`) or is not a boolean is refused with CEL's reason, as Hubble refuses it. A flow matches when
any of the expressions is true; one that fails on a flow (a missing map key, a division by zero) does not select
it, as in Hubble.

CEL reads the flow itself, not the record's columns, so these are flow tests (FlowTest): they run last, on the
records the cheaper column tests of the same FlowFilter kept (observer/filters/core.py). The runtime is Google's
C++ one, whose type checker is cel-go's and whose `matches()` is RE2 (observer/filters/regex.py says why).
"""

from __future__ import annotations

import functools
import threading

import cel_expr_python.cel as cel
from google.protobuf import descriptor_pool

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import FilterContext, FilterError, FlowTest
from flowscope.observer.filters.regex import shown

VARIABLE = "_flow"
MAX_LENGTH = 4096  # characters, Hubble's limit on one expression

_compiling = threading.Lock()  # the binding does not promise that one Env compiles on many threads at once


@functools.cache
def _environment() -> cel.Env:
    """flow.Flow as the generated code registered it, declared the way Hubble declares it."""
    pool = descriptor_pool.Default()
    flow_type = flow_pb2.Flow.DESCRIPTOR.full_name
    return cel.NewEnv(pool, variables={VARIABLE: cel.Type(flow_type)}, container=flow_pb2.DESCRIPTOR.package)


def _reason(exc: Exception) -> str:
    """CEL's errors on one line: where in the expression and what ("1:17: Syntax error: ..."), without the
    drawing of the expression under each; a client's error is one line (a CLI prints it as it comes)."""
    text = str(exc).removeprefix("INVALID_ARGUMENT: ")
    errors = [line.removeprefix("ERROR: <input>:") for line in text.splitlines() if line.startswith("ERROR: ")]
    reason = "; ".join(errors) if errors else text.splitlines()[0] if text else "CEL refused it"
    if "(uint, int)" in reason or "(int, uint)" in reason:
        reason += " (unsigned fields such as ports compare with unsigned numbers: 9000u)"
    return reason


def compile_expression(expression: str) -> cel.Expression:
    """One expression, checked against flow.Flow; FilterError says what is wrong with it."""
    what = f"invalid cel expression {shown(expression)}"
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"{what}: longer than {MAX_LENGTH} characters")
    try:
        with _compiling:
            compiled = _environment().compile(expression)
    except RuntimeError as exc:
        raise FilterError(f"{what}: {_reason(exc)}") from None
    result = compiled.return_type()
    if result != cel.Type.BOOL:
        raise FilterError(f"{what}: its result is {result.name().lower()}, not a boolean")
    return compiled


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[FlowTest]:
    return flow_tests(ff)


def flow_tests(ff: flow_pb2.FlowFilter) -> list[FlowTest]:
    """The filter's expressions as one test of a Flow message (any expression true selects it); the agent's
    filters and those of flows read from a file (messages.py) both use it."""
    if not ff.experimental.cel_expression:
        return []
    expressions = [compile_expression(expression) for expression in ff.experimental.cel_expression]

    def by_expression(flow: flow_pb2.Flow) -> bool:
        for expression in expressions:
            value = expression.eval(data={VARIABLE: flow})
            if value.type() == cel.Type.BOOL and value.value() is True:
                return True
        return False

    return [by_expression]
