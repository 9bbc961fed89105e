"""The capture length: one rule, and every stage that takes a capture length refuses by it, with its words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flowscope.common.capture import DEFAULT_CAPLEN, MAX_CAPLEN, check_caplen
from flowscope.observer.agent import AgentConfig
from flowscope.observer.datapath import DatapathConfig
from flowscope.observer.datapath.kdrop import KernelDropConfig

STAGES: dict[str, Callable[[int], object]] = {
    "agent": lambda caplen: AgentConfig(node_name="n", caplen=caplen).check(),
    "datapath": lambda caplen: DatapathConfig(caplen=caplen),
    "kernel-drops": lambda caplen: KernelDropConfig(caplen=caplen),
}


@pytest.mark.parametrize("caplen", [8, 64, DEFAULT_CAPLEN, 1000, MAX_CAPLEN])
def test_multiples_of_8_up_to_a_page(caplen: int) -> None:
    assert check_caplen(caplen) == caplen


@pytest.mark.parametrize("caplen", [0, -8, 100, 7, MAX_CAPLEN + 8, 8192])
def test_the_rule_says_itself(caplen: int) -> None:
    with pytest.raises(ValueError, match=rf"^capture length must be a multiple of 8 in 8\.\.4096, not {caplen}$"):
        check_caplen(caplen)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("caplen", [0, 100, 8192])
def test_every_stage_refuses_by_the_one_rule(stage: str, caplen: int) -> None:
    with pytest.raises(ValueError, match=r"capture length must be a multiple of 8 in 8\.\.4096"):
        STAGES[stage](caplen)


def test_every_stage_starts_at_the_default() -> None:
    assert AgentConfig(node_name="n").caplen == DatapathConfig().caplen == KernelDropConfig().caplen == DEFAULT_CAPLEN
