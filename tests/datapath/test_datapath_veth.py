"""Real packets on a real veth: a pod namespace pings and sends UDP to its node, and the datapath attached to
the host side reports them with the right observation points, addresses, ports, interface and identities."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from dp_netns import VethPair, inside, run
from dp_run import addr16

from flowscope.common import names
from flowscope.observer import events as ev
from flowscope.observer.datapath import Datapath

pytestmark = pytest.mark.bpf

EP_ID, POD_IDENTITY, HOST_IDENTITY = 1001, 50001, 1
UDP_SPORT, UDP_DPORT = 40001, 9999

SEND_UDP = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", {UDP_SPORT}))
s.sendto(b"flowscope", ("{{dst}}", {UDP_DPORT}))
"""


def collect(dp: Datapath, done: Callable[[np.ndarray], bool], timeout_s: float = 5.0) -> np.ndarray:
    """Read events until `done` says the ones wanted are there (or the time is up)."""
    batches: list[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches.append(dp.reader().read_batch(0.1))
        events = np.concatenate(batches)
        if done(events):
            return events
    return np.concatenate(batches)


def matching(events: np.ndarray, **fields: object) -> np.ndarray:
    keep = np.ones(len(events), dtype=bool)
    for name, value in fields.items():
        column = events[name]
        keep &= (column == np.void(value)) if isinstance(value, bytes) else (column == value)
    return events[keep]


def test_pings_and_udp_from_a_pod(veth: VethPair) -> None:
    with inside(veth.node), Datapath() as dp:
        ifindex = dp.attach_endpoint(veth.host_if, ep_id=EP_ID, identity=POD_IDENTITY)
        assert ifindex == veth.host_ifindex()
        dp.replace_ipcache(
            {
                veth.pod_v4: POD_IDENTITY,
                veth.pod_v6: POD_IDENTITY,
                veth.node_v4: HOST_IDENTITY,
                veth.node_v6: HOST_IDENTITY,
            }
        )
        run("ping", "-c", "2", "-i", "0.2", "-W", "2", veth.node_v4, netns=veth.pod)
        run("ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", veth.node_v6, netns=veth.pod)
        run("python3", "-c", SEND_UDP.format(dst=veth.node_v4), netns=veth.pod)

        pod4, node4 = addr16(veth.pod_v4), addr16(veth.node_v4)
        pod6, node6 = addr16(veth.pod_v6), addr16(veth.node_v6)
        out = {"subtype": names.TRACE_FROM_LXC, "src_identity": POD_IDENTITY, "dst_identity": HOST_IDENTITY}
        back = {"subtype": names.TRACE_TO_LXC, "src_identity": HOST_IDENTITY, "dst_identity": POD_IDENTITY}
        wanted = {
            "echo requests": dict(out, saddr=pod4, daddr=node4, l4_proto=1, sport=8, dport=0),
            "echo replies": dict(back, saddr=node4, daddr=pod4, l4_proto=1, sport=0, dport=0),
            "echo requests v6": dict(out, saddr=pod6, daddr=node6, l4_proto=58, sport=128, dport=0),
            "echo replies v6": dict(back, saddr=node6, daddr=pod6, l4_proto=58, sport=129, dport=0),
            "udp": dict(out, saddr=pod4, daddr=node4, l4_proto=17, sport=UDP_SPORT, dport=UDP_DPORT),
            "port unreachable": dict(back, saddr=node4, daddr=pod4, l4_proto=1, sport=3, dport=3),
        }
        expected_count = {name: 1 if name in ("udp", "port unreachable") else 2 for name in wanted}
        events = collect(dp, lambda evs: all(len(matching(evs, **wanted[n])) >= expected_count[n] for n in wanted))

    for name, fields in wanted.items():
        found = matching(events, **fields)
        assert len(found) == expected_count[name], name
        assert set(found["ifindex"].tolist()) == {ifindex}, name
        assert set(found["ep_id"].tolist()) == {EP_ID}, name
        assert set(found["type"].tolist()) == {names.EVENT_TRACE}, name
        assert set(found["verdict"].tolist()) == {names.VERDICT_FORWARDED}, name
        for event in found:
            assert int(event["len_cap"]) == min(int(event["len_orig"]), 128)
            assert int(event["flags"]) & ev.F_L4
    udp = matching(events, **wanted["udp"])[0]
    assert bytes(udp["data"])[42 : int(udp["len_cap"])] == b"flowscope"  # 14 Ethernet + 20 IPv4 + 8 UDP

    # the datapath is gone with the context: nothing of ours is left on the device
    for direction in ("ingress", "egress"):
        assert "flowscope" not in run("tc", "filter", "show", "dev", veth.host_if, direction, netns=veth.node).stdout
