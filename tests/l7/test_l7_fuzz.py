"""The L7 parsers never raise: 20,000 mutated messages per parser, the same ones every run (a fixed seed).

bench/l7_fuzz.py runs a million per parser; this bounded run keeps CI under a few seconds.
"""

from __future__ import annotations

import pytest

from flowscope.observer.l7.fuzzing import Target, mutated, targets

MESSAGES = 20_000
SEED = 14


@pytest.mark.parametrize("target", targets(), ids=lambda target: target.name)
def test_mutated_messages_give_a_value_or_nothing(target: Target) -> None:
    for message in mutated(target, MESSAGES, SEED):
        try:
            target.parse(message)
        except Exception as exc:
            pytest.fail(f"{target.name} raised {exc!r} on {message!r}")


@pytest.mark.parametrize("target", targets(), ids=lambda target: target.name)
def test_the_seeds_parse_to_something(target: Target) -> None:
    """Fuzzing from seeds the parser rejects would only ever test its first check."""
    for seed in target.seeds:
        assert target.parse(seed), seed
