"""Observation points, endpoints and identities: what each entry program reports about who talks to whom."""

from __future__ import annotations

import pytest
from dp_netns import inside, namespaces, run
from dp_packets import (
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SYN,
    arp_request,
    eth,
    ipv4,
    ipv6,
    tcp,
    udp,
)
from dp_run import EP_ID, EP_IDENTITY, LOOPBACK, WORLD, run_one

from flowscope.common import names
from flowscope.observer.datapath import Datapath, IpcacheEntry

pytestmark = pytest.mark.bpf

POD_V4, PEER_V4, STRANGER_V4 = "192.0.2.10", "198.51.100.20", "203.0.113.30"
POD_V6, PEER_V6, STRANGER_V6 = "2001:db8:a::10", "2001:db8:b::20", "2001:db8:c::30"
POD_IDENTITY, PEER_IDENTITY = 4444, 6666

TCP4 = eth(ETH_P_IP, ipv4(POD_V4, PEER_V4, IPPROTO_TCP, tcp(40000, 80, SYN)))
TCP6 = eth(ETH_P_IPV6, ipv6(POD_V6, PEER_V6, IPPROTO_TCP, tcp(40000, 80, SYN)))


@pytest.fixture
def ipcache(dp: Datapath) -> Datapath:
    """The pod's own addresses as /32 and /128, the peers' as a /24 and a /48."""
    dp.replace_ipcache(
        {
            f"{POD_V4}/32": POD_IDENTITY,
            "198.51.100.0/24": PEER_IDENTITY,
            f"{POD_V6}/128": POD_IDENTITY,
            "2001:db8:b::/48": (PEER_IDENTITY, 0),
        }
    )
    return dp


@pytest.mark.parametrize("packet", [TCP4, TCP6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize(
    ("program", "point", "src", "dst"),
    [
        ("from_container", names.TRACE_FROM_LXC, EP_IDENTITY, PEER_IDENTITY),  # the endpoint is the source
        ("to_container", names.TRACE_TO_LXC, POD_IDENTITY, EP_IDENTITY),  # the endpoint is the destination
        ("from_netdev", names.TRACE_FROM_NETWORK, POD_IDENTITY, PEER_IDENTITY),
        ("to_netdev", names.TRACE_TO_NETWORK, POD_IDENTITY, PEER_IDENTITY),
    ],
)
def test_observation_point_and_identities(
    ipcache: Datapath, packet: bytes, program: str, point: int, src: int, dst: int
) -> None:
    event = run_one(ipcache, program, packet)
    assert (int(event["type"]), int(event["subtype"])) == (names.EVENT_TRACE, point)
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (src, dst)
    assert (int(event["ifindex"]), int(event["ep_id"])) == (LOOPBACK, EP_ID)


@pytest.mark.parametrize("program", ["from_netdev", "to_netdev"])
def test_node_device_has_endpoint_id_zero(ipcache: Datapath, program: str) -> None:
    ipcache.remove_endpoint(LOOPBACK)
    event = run_one(ipcache, program, TCP4)
    assert int(event["ep_id"]) == 0
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (POD_IDENTITY, PEER_IDENTITY)


@pytest.mark.parametrize(
    "packet",
    [
        eth(ETH_P_IP, ipv4(STRANGER_V4, "203.0.113.31", IPPROTO_UDP, udp(1, 2))),
        eth(ETH_P_IPV6, ipv6(STRANGER_V6, "2001:db8:c::31", IPPROTO_UDP, udp(1, 2))),
    ],
    ids=["ipv4", "ipv6"],
)
def test_addresses_nobody_owns_are_world(ipcache: Datapath, packet: bytes) -> None:
    event = run_one(ipcache, "from_netdev", packet)
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (WORLD, WORLD)


def test_longest_prefix_wins_and_changes_apply_at_once(ipcache: Datapath) -> None:
    ipcache.maps.ipcache_set(f"{PEER_V4}/32", IpcacheEntry(identity=7777, ep_id=3))
    assert int(run_one(ipcache, "from_netdev", TCP4)["dst_identity"]) == 7777
    ipcache.maps.ipcache_delete(f"{PEER_V4}/32")
    assert int(run_one(ipcache, "from_netdev", TCP4)["dst_identity"]) == PEER_IDENTITY


def test_replace_ipcache_leaves_exactly_the_new_entries(ipcache: Datapath) -> None:
    ipcache.replace_ipcache({"198.51.100.0/24": 8888, "10.0.0.0/8": 9999})
    entries = ipcache.maps.ipcache_entries()
    assert {str(net): entry.identity for net, entry in entries.items()} == {
        "198.51.100.0/24": 8888,
        "10.0.0.0/8": 9999,
    }
    event = run_one(ipcache, "from_netdev", TCP4)
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (WORLD, 8888)


def test_non_ip_frames_have_only_the_endpoint_identity(ipcache: Datapath) -> None:
    arp = eth(ETH_P_ARP, arp_request(POD_V4, PEER_V4))
    event = run_one(ipcache, "from_container", arp)
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (EP_IDENTITY, 0)
    event = run_one(ipcache, "to_container", arp)
    assert (int(event["src_identity"]), int(event["dst_identity"])) == (0, EP_IDENTITY)


def test_the_event_names_the_device_the_packet_is_on(dp: Datapath) -> None:
    """A test run's skb can be put on another device of the namespace: the event carries its ifindex."""
    with namespaces("dev") as (name,):
        run("ip", "link", "add", "fsa", "type", "veth", "peer", "name", "fsb", netns=name)
        ifindex = int(run("cat", "/sys/class/net/fsa/ifindex", netns=name).stdout)
        dp.set_endpoint(ifindex, 99, 1234)
        with inside(name):
            event = run_one(dp, "from_container", TCP4, ifindex=ifindex)
    assert (int(event["ifindex"]), int(event["ep_id"]), int(event["src_identity"])) == (ifindex, 99, 1234)


@pytest.mark.parametrize("index", [70000, 65535], ids=["hash", "last-array-slot"])
def test_an_endpoint_behind_a_high_interface_index(dp: Datapath, index: int) -> None:
    """Indexes below 65,536 find their endpoint in an array slot, higher ones in a hash: both work, and a removed
    endpoint is no endpoint any more."""
    with namespaces("high") as (name,):
        run("ip", "link", "add", "fsa", "index", str(index), "type", "veth", "peer", "name", "fsb", netns=name)
        dp.set_endpoint(index, 98, 4321)
        with inside(name):
            event = run_one(dp, "from_container", TCP4, ifindex=index)
            assert (int(event["ifindex"]), int(event["ep_id"]), int(event["src_identity"])) == (index, 98, 4321)
            dp.remove_endpoint(index)
            event = run_one(dp, "from_container", TCP4, ifindex=index)
            assert (int(event["ep_id"]), int(event["src_identity"])) == (0, WORLD)
