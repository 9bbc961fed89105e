"""Attaching to tc hooks through tcx links: each hook's program where it belongs, swapped in place, taken off
exactly, others' programs kept."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest
from dp_netns import inside, namespaces, run

from flowscope.observer.datapath import Datapath, Hook, reclaim
from flowscope.observer.datapath.bpfsys import BPF_TCX_INGRESS, prog_info, tcx_link_create
from flowscope.observer.datapath.tc import attached_programs

pytestmark = pytest.mark.bpf


@pytest.fixture
def netns(loaded: Datapath) -> Iterator[str]:
    """A namespace with a veth pair fsa/fsb, which the test thread is inside of."""
    with namespaces("attach") as (name,):
        run("ip", "link", "add", "fsa", "type", "veth", "peer", "name", "fsb", netns=name)
        with inside(name):
            yield name


def on(dev: str, direction: str) -> list[str]:
    """Names of the programs on one tcx hook of a device of the test thread's namespace, in running order."""
    return [a.name for a in attached_programs() if a.device == dev and a.direction == direction]


def ids_on(dev: str, direction: str) -> list[int]:
    return [a.prog_id for a in attached_programs() if a.device == dev and a.direction == direction]


def test_attach_puts_each_hook_s_program_and_detach_takes_them_off(netns: str) -> None:
    with Datapath() as dp:
        dp.attach_endpoint("fsa", ep_id=12, identity=3000)
        dp.attach_device("fsb")
        assert on("fsa", "ingress") == ["from_container"]
        assert on("fsa", "egress") == ["to_container"]
        assert on("fsb", "ingress") == ["from_netdev"]
        assert on("fsb", "egress") == ["to_netdev"]
        assert len(dp.attached()) == 4

        dp.detach("fsa")
        assert on("fsa", "ingress") == on("fsa", "egress") == []
        assert len(dp.attached()) == 2
    # leaving the context detached the rest
    assert attached_programs() == []
    # the module tool shows the same from a shell in the namespace, and runpy has nothing to warn about
    listing = run(sys.executable, "-m", "flowscope.observer.datapath", netns=netns)
    assert listing.stdout == ""
    assert listing.stderr == ""


def test_attaching_again_swaps_the_program_in_place(netns: str) -> None:
    with Datapath() as dp, Datapath() as other:
        dp.attach("fsa", [Hook.FROM_CONTAINER])
        before = ids_on("fsa", "ingress")
        dp.attach("fsa", ["from-container"])
        assert ids_on("fsa", "ingress") == before  # attaching the same again: nothing changes
        dp._tc.attach("fsa", Hook.FROM_CONTAINER, other.program_fd("from_container"))
        after = ids_on("fsa", "ingress")
        assert len(before) == len(after) == 1
        assert after == [prog_info(other.program_fd("from_container")).id]  # swapped, not added


def test_detach_leaves_other_programs(netns: str, loaded: Datapath) -> None:
    someone_else = tcx_link_create(loaded.program_fd("stage_send_trace"), socket.if_nametoindex("fsa"), BPF_TCX_INGRESS)
    try:
        with Datapath() as dp:
            dp.attach_endpoint("fsa", ep_id=1, identity=300)
            assert on("fsa", "ingress") == ["stage_send_trac", "from_container"]  # names are cut to 15
        assert on("fsa", "ingress") == ["stage_send_trac"]
        assert reclaim() == 0  # not ours either
    finally:
        os.close(someone_else)


def test_attach_to_a_missing_device_is_an_os_error(netns: str, loaded: Datapath) -> None:
    with pytest.raises(OSError):
        loaded.attach("no-such-dev", ["from-netdev"])
    with pytest.raises(ValueError):
        loaded.attach("fsa", ["from-somewhere"])
    loaded.detach("no-such-dev")  # gone already: nothing to do


def test_detach_after_the_device_vanished(netns: str) -> None:
    with Datapath() as dp:
        dp.attach_endpoint("fsa", ep_id=1, identity=300)
        run("ip", "link", "del", "fsa", netns=netns)
        dp.detach("fsa")
        assert dp.attached() == []
