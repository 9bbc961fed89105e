"""`lab up --tunnel vxlan` without agents: the nodes' fs_vxlan devices carry pod traffic on their own (the kernel
encapsulates, the datapath only observes), and `lab down` takes them with the namespaces."""

from __future__ import annotations

import json

from lab_helpers import assert_nothing_left

from flowscope.lab import Lab
from flowscope.lab.topology import TUNNEL_DEVICE, TUNNEL_VNI


def test_overlay_lab_carries_pod_traffic_and_goes_away(fresh_name: str) -> None:
    lab = Lab(fresh_name, nodes=2, tunnel="vxlan").up(traffic=False, agent=False)
    try:
        (link,) = json.loads(lab.exec("node1", ["ip", "-d", "-j", "link", "show", TUNNEL_DEVICE]).stdout)
        assert link["linkinfo"]["info_kind"] == "vxlan" and link["linkinfo"]["info_data"]["external"] is True
        assert link["mtu"] == 1450 and link["address"] == lab.node("node1").tunnel_mac
        routes = lab.exec("node1", ["ip", "route", "show", lab.node("node2").pod_cidr_v4]).stdout
        assert f"encap ip id {TUNNEL_VNI} src 10.77.0.1 dst 10.77.0.2" in routes and f"dev {TUNNEL_DEVICE}" in routes
        for address in (lab.pod("server").ipv4, lab.pod("server").ipv6):
            lab.exec("client", ["ping", "-c", "1", "-W", "5", address])
        assert Lab.existing(fresh_name).topology.tunnel == "vxlan"
    finally:
        lab.down()
    assert_nothing_left(fresh_name)
