"""The kfree_skb program on its own: real drops in scratch namespaces, read from its ring buffer.

Which namespaces it reports for, what a record holds (addresses, ports, reason, location, the frame's bytes),
the rate limit's exact counts, and that it leaves nothing behind when its process ends, even by kill -9.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kdrop_helpers import read_until, remove_netns, scratch_netns, send_in

from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.datapath.bpfsys import prog_info
from flowscope.observer.datapath.kallsyms import KernelSymbols
from flowscope.observer.datapath.kdrop import KernelDrops
from flowscope.observer.datapath.netns_maps import netns_inode

pytestmark = pytest.mark.bpf

EP_A, EP_B = 77, 78
PAYLOAD = len(b"kernel drop 00000")


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    a, b = scratch_netns("kda"), scratch_netns("kdb")
    try:
        yield a, b
    finally:
        remove_netns(a)
        remove_netns(b)


@pytest.fixture(scope="module")
def kdrop(namespaces: tuple[str, str]) -> Iterator[KernelDrops]:
    with KernelDrops() as kdrop:
        yield kdrop


@pytest.fixture
def only_a(kdrop: KernelDrops, namespaces: tuple[str, str]) -> KernelDrops:
    """Report drops in namespace A only, with the rate limit off, and nothing left unread."""
    a, _b = namespaces
    kdrop.set_namespaces({netns_inode(a) or 0: EP_A})
    kdrop.configure(reports_per_second=0)
    kdrop.reader().read_batch(0)
    return kdrop


def no_socket(kdrop: KernelDrops) -> int:
    return next(value for value, name in kdrop.reasons.names.items() if name == "NO_SOCKET")


def dropped_to(records: np.ndarray, kdrop: KernelDrops, dport: int) -> np.ndarray:
    return records[(records["drop_reason"] == no_socket(kdrop)) & (records["dport"] == dport)]


@pytest.mark.parametrize("family", [4, 6])
def test_udp_to_a_closed_port(only_a: KernelDrops, namespaces: tuple[str, str], family: int) -> None:
    host, sport, dport = ("127.0.0.1", 41004, 7004) if family == 4 else ("::1", 41006, 7006)
    send_in(namespaces[0], host, dport, sport)
    records = read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, dport)) >= 1)
    (ev,) = dropped_to(records, only_a, dport)

    ip_len = 20 if family == 4 else 40
    frame = 14 + ip_len + 8 + PAYLOAD  # loopback has a (zeroed) Ethernet header
    loopback = b"\x7f\0\0\x01" + bytes(12) if family == 4 else bytes(15) + b"\x01"
    assert (ev["type"], ev["subtype"], ev["verdict"], ev["version"]) == (names.EVENT_DROP, 0, 2, 1)
    expected_flags = events.F_KERNEL_DROP | events.F_L4 | (events.F_IPV6 if family == 6 else 0)
    assert ev["flags"] == expected_flags
    assert (ev["ep_id"], ev["ifindex"]) == (EP_A, 0)  # a pod namespace's ifindex means nothing to the node
    assert (ev["ethertype"], ev["l4_proto"], ev["sport"], ev["dport"]) == (
        0x0800 if family == 4 else 0x86DD,
        17,
        sport,
        dport,
    )
    assert bytes(ev["saddr"]) == bytes(ev["daddr"]) == loopback
    assert (ev["len_orig"], ev["len_cap"], ev["packets"], ev["bytes"]) == (frame, frame, 1, frame)
    data = bytes(ev["data"])[:frame]
    assert data[12:14] == (b"\x08\x00" if family == 4 else b"\x86\xdd")
    assert data[-PAYLOAD:] == b"kernel drop 00000"
    assert ev["cpu"] == 0  # sent with taskset -c 0: loopback delivers on the sending CPU
    location = KernelSymbols()(int(ev["location"]))
    assert location is not None and "udp" in location, location


def test_drops_in_namespaces_not_followed_are_not_reported(only_a: KernelDrops, namespaces: tuple[str, str]) -> None:
    a, b = namespaces
    send_in(b, "127.0.0.1", 7010, 41010)  # B is not followed yet
    send_in(a, "127.0.0.1", 7011, 41011)  # A's drop comes after B's: once it is read, B's would have been too
    records = read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, 7011)) >= 1)
    assert len(dropped_to(records, only_a, 7010)) == 0
    assert set(records["ep_id"].tolist()) == {EP_A}

    only_a.follow_endpoints({EP_A: a, EP_B: b})
    assert only_a.namespaces() == {only_a.node_netns: 0, netns_inode(a): EP_A, netns_inode(b): EP_B}
    send_in(b, "127.0.0.1", 7012, 41012)
    (ev,) = dropped_to(read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, 7012)) >= 1), only_a, 7012)
    assert ev["ep_id"] == EP_B


def test_a_drop_storm_is_rate_limited_with_exact_counts(only_a: KernelDrops, namespaces: tuple[str, str]) -> None:
    rate, storm, dport = 20, 600, 7020
    only_a.configure(reports_per_second=rate)
    limited_before = sum(only_a.rate_limited_counts())
    elapsed = send_in(namespaces[0], "127.0.0.1", dport, 41020, count=storm, cpu=0)
    time.sleep(0.1)
    reports = dropped_to(read_until(only_a.reader(), lambda r: False, timeout=0.3), only_a, dport)
    limited = sum(only_a.rate_limited_counts()) - limited_before

    assert 0 < len(reports) <= rate * (1 + elapsed + 0.5)  # a burst of `rate`, then `rate` a second
    assert len(reports) + limited == storm  # every drop is a report or counted as rate limited
    pending = only_a.pending()
    assert int(reports["packets"].sum()) + pending == storm  # the rest wait in their bucket
    assert pending > 0

    time.sleep(2.5 / rate)  # credit for another report: the next drop carries what is pending
    send_in(namespaces[0], "127.0.0.1", dport, 41020, count=1, cpu=0)
    (last,) = dropped_to(read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, dport)) >= 1), only_a, dport)
    assert last["packets"] == pending + 1
    assert last["flags"] & events.F_AGGREGATE
    assert int(reports["packets"].sum()) + int(last["packets"]) == storm + 1
    assert only_a.pending() == 0
    frame = int(last["len_orig"])
    assert int(reports["bytes"].sum()) + int(last["bytes"]) == (storm + 1) * frame


LOADER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from flowscope.observer.datapath.bpfsys import prog_info
from flowscope.observer.datapath.kdrop import KernelDrops
kdrop = KernelDrops()
print(prog_info(kdrop.program_fd()).id, flush=True)
time.sleep(60)
"""


def exists(kind: str, object_id: int) -> bool:
    return subprocess.run(["bpftool", kind, "show", "id", str(object_id)], capture_output=True).returncode == 0


def program_and_maps(prog_id: int) -> list[tuple[str, int]]:
    """The program and every map it uses (ring buffer, counters, buckets, namespaces, config)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)], capture_output=True, check=True)
    return [("prog", prog_id)] + [("map", map_id) for map_id in json.loads(out.stdout)["map_ids"]]


def wait_gone(objects: list[tuple[str, int]], timeout: float = 5.0) -> list[tuple[str, int]]:
    """Objects still there after a while: the kernel frees them just after their last reference goes."""
    deadline = time.monotonic() + timeout
    while (left := [o for o in objects if exists(*o)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_nothing_is_left_after_close_or_kill(kdrop: KernelDrops) -> None:
    second = KernelDrops()
    objects = program_and_maps(prog_info(second.program_fd()).id)
    assert len(objects) >= 6 and all(exists(*o) for o in objects)
    second.close()
    assert wait_gone(objects) == []

    project = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", LOADER, project], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        objects = program_and_maps(int(proc.stdout.readline()))
        assert all(exists(*o) for o in objects)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert wait_gone(objects) == []  # nothing pinned, nothing attached outside the process: nothing to reclaim


def test_echo_replies_a_raw_socket_took_are_not_drops(only_a: KernelDrops, namespaces: tuple[str, str]) -> None:
    """ping (root: a raw socket) gets its replies, yet the kernel frees each as NO_SOCKET: not reported."""
    a = namespaces[0]
    for host in ("127.0.0.1", "::1"):
        subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "2", "-i", "0.2", host], check=True, capture_output=True
        )
    send_in(a, "127.0.0.1", 7030, 41030)  # a drop that is reported, after the pings
    records = read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, 7030)) >= 1)
    assert len(dropped_to(records, only_a, 7030)) == 1
    assert not np.isin(records["l4_proto"], (1, 58)).any()


UNIX_DATAGRAMS_NOBODY_READS = """
import socket
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
for _ in range(3):
    a.send(b"x")
b.close()  # the kernel frees the three unread datagrams as SOCKET_CLOSE drops
a.close()
"""


def test_unix_socket_messages_are_no_network_drops(only_a: KernelDrops, namespaces: tuple[str, str]) -> None:
    a = namespaces[0]
    subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", UNIX_DATAGRAMS_NOBODY_READS], check=True)
    send_in(a, "127.0.0.1", 7040, 41040)
    records = read_until(only_a.reader(), lambda r: len(dropped_to(r, only_a, 7040)) >= 1)
    socket_close = next(v for v, name in only_a.reasons.names.items() if name == "SOCKET_CLOSE")
    assert len(dropped_to(records, only_a, 7040)) == 1
    assert socket_close not in records["drop_reason"].tolist()
    assert set(records["ethertype"].tolist()) == {0x0800}
