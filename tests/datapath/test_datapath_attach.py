"""Attaching to tc hooks: filters named flowscope:<hook>, replaced in place, removed exactly, others kept."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dp_netns import inside, namespaces, run
from pyroute2 import IPRoute

from observer.datapath import Datapath, Hook, reclaim
from observer.datapath.tc import TC_H_INGRESS

pytestmark = pytest.mark.bpf


@pytest.fixture
def netns(loaded: Datapath) -> Iterator[str]:
    """A namespace with a veth pair fsa/fsb, which the test thread is inside of."""
    with namespaces("attach") as (name,):
        run("ip", "link", "add", "fsa", "type", "veth", "peer", "name", "fsb", netns=name)
        with inside(name):
            yield name


def filters(netns: str, dev: str, direction: str) -> list[str]:
    """The lines of `tc filter show` that name a filter (handle), for one hook of one device."""
    out = run("tc", "filter", "show", "dev", dev, direction, netns=netns, check=False).stdout
    return [line for line in out.splitlines() if "handle" in line]


def names(netns: str, dev: str, direction: str) -> list[str]:
    return [found for line in filters(netns, dev, direction) for found in re.findall(r"flowscope:\S+", line)]


def prog_ids(netns: str, dev: str, direction: str) -> list[str]:
    return [found for line in filters(netns, dev, direction) for found in re.findall(r" id (\d+) ", line)]


def has_clsact(netns: str, dev: str) -> bool:
    return "clsact" in run("tc", "qdisc", "show", "dev", dev, netns=netns).stdout


def test_attach_names_filters_and_detach_removes_them_and_our_clsact(netns: str) -> None:
    with Datapath() as dp:
        dp.attach_endpoint("fsa", ep_id=12, identity=3000)
        dp.attach_device("fsb")
        assert names(netns, "fsa", "ingress") == ["flowscope:from-container"]
        assert names(netns, "fsa", "egress") == ["flowscope:to-container"]
        assert names(netns, "fsb", "ingress") == ["flowscope:from-netdev"]
        assert names(netns, "fsb", "egress") == ["flowscope:to-netdev"]
        assert "direct-action" in filters(netns, "fsa", "ingress")[0]
        assert len(dp.attached()) == 4

        dp.detach("fsa")
        assert filters(netns, "fsa", "ingress") == filters(netns, "fsa", "egress") == []
        assert not has_clsact(netns, "fsa")  # we made it, nothing else is on it
        assert len(dp.attached()) == 2
    # leaving the context detached the rest
    assert filters(netns, "fsb", "ingress") == filters(netns, "fsb", "egress") == []
    assert not has_clsact(netns, "fsb")


def test_attaching_again_replaces_the_program_in_place(netns: str) -> None:
    with Datapath() as first, Datapath() as second:
        first.attach("fsa", [Hook.FROM_CONTAINER])
        before, before_ids = filters(netns, "fsa", "ingress"), prog_ids(netns, "fsa", "ingress")
        second.attach("fsa", ["from-container"])
        after, after_ids = filters(netns, "fsa", "ingress"), prog_ids(netns, "fsa", "ingress")
        assert len(before) == len(after) == 1
        assert before_ids != after_ids  # the other datapath's program now
        assert before[0].split(" flowscope")[0] == after[0].split(" flowscope")[0]  # same prio and handle


def test_detach_leaves_a_clsact_it_found_and_other_filters(netns: str, loaded: Datapath) -> None:
    run("tc", "qdisc", "add", "dev", "fsa", "clsact", netns=netns)
    with IPRoute() as ipr:
        ifindex = ipr.link_lookup(ifname="fsa")[0]
        ipr.tc(
            "add-filter",
            "bpf",
            ifindex,
            1,
            parent=TC_H_INGRESS,
            fd=loaded.program_fd("stage_send_trace"),
            name="someone-else",
            classid=1,
            direct_action=True,
        )
    with Datapath() as dp:
        dp.attach_endpoint("fsa", ep_id=1, identity=300)
        assert len(filters(netns, "fsa", "ingress")) == 2
    remaining = filters(netns, "fsa", "ingress")
    assert len(remaining) == 1 and "someone-else" in remaining[0]
    assert has_clsact(netns, "fsa")
    assert reclaim() == 0  # not ours either


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
