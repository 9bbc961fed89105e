"""Fixtures of the datapath tests: a loaded datapath, packets run through it, and a veth pair in namespaces.

Everything a fixture creates (programs, maps, filters, namespaces) is removed when it ends, on failure too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dp_netns import VethPair, namespaces, run
from dp_run import EP_ID, EP_IDENTITY, LOOPBACK

from flowscope.observer.datapath import Datapath, DatapathConfig, RuntimeConfig


@pytest.fixture(scope="module")
def loaded() -> Iterator[Datapath]:
    """One compiled datapath for a whole test module: compiling takes a second or two."""
    with Datapath(DatapathConfig(ring_buffer_pages=64)) as datapath:
        yield datapath


@pytest.fixture
def dp(loaded: Datapath) -> Iterator[Datapath]:
    """The module's datapath with an empty ring and conntrack, loopback as endpoint EP_ID; put back as found after."""
    loaded.reader().read_batch(0)
    loaded.conntrack.clear()
    loaded.set_endpoint(LOOPBACK, EP_ID, EP_IDENTITY)
    try:
        yield loaded
    finally:
        loaded.fill_tail_calls()
        loaded.replace_ipcache({})
        for ifindex in loaded.maps.endpoints():
            loaded.remove_endpoint(ifindex)
        clock = loaded.clock  # the conversion stays: it is what the agent runs with
        loaded.maps.write_config(RuntimeConfig(jiffy_ns=clock.jiffy_ns, jiffies_offset_ns=clock.offset_ns))
        for generation in (0, 1):
            loaded.policy.clear_generation(generation)
        loaded.conntrack.clear()
        loaded.reader().read_batch(0)


@pytest.fixture
def lb(dp: Datapath) -> Iterator[Datapath]:
    """The datapath for tests of services: the frontends a test installs are removed after it."""
    try:
        yield dp
    finally:
        dp.lb.replace([])


@pytest.fixture
def veth() -> Iterator[VethPair]:
    with namespaces("node", "pod") as (node, pod):
        pair = VethPair(node, pod)
        run(
            "ip",
            "link",
            "add",
            pair.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod,
            netns=node,
        )
        for ns, ifname, v4, v6 in (
            (node, pair.host_if, pair.node_v4, pair.node_v6),
            (pod, "eth0", pair.pod_v4, pair.pod_v6),
        ):
            run("ip", "addr", "add", f"{v4}/24", "dev", ifname, netns=ns)
            run("ip", "addr", "add", f"{v6}/64", "dev", ifname, "nodad", netns=ns)
            run("ip", "link", "set", ifname, "up", netns=ns)
        yield pair
