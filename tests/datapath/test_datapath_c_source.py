"""The loader's pure parts: the translation unit bcc compiles, the tail-call table, settings, ipcache keys."""

from __future__ import annotations

import ipaddress
import re

import pytest

from flowscope.common.aggregation import AggregationSettings
from flowscope.common.capture import DEFAULT_CAPLEN
from flowscope.observer.datapath import DatapathConfig
from flowscope.observer.datapath.c_source import BPF_DIR, cflags, tail_call_slots, translation_unit
from flowscope.observer.datapath.maps import ipcache_key, ipcache_network


def test_translation_unit_splices_each_header_once_with_line_markers() -> None:
    text = translation_unit()
    assert not re.search(r'^\s*#\s*include\s+"', text, re.MULTILINE)  # every quoted include resolved
    headers = sorted((BPF_DIR / "include" / "flowscope").glob("*.h"))
    for header in headers:
        assert text.count(f'#line 1 "{header}"') == 1, header.name
    assert "#include <uapi/linux/bpf.h>" in text  # system headers stay for clang
    assert text.startswith(f'#line 1 "{BPF_DIR / "datapath.c"}"')


def test_every_tail_call_slot_names_a_stage_function() -> None:
    slots = tail_call_slots()
    assert slots == {
        0: "stage_ipv4",
        1: "stage_ipv6",
        2: "stage_other",
        3: "stage_send_trace",
        4: "stage_ct",
        5: "stage_policy",
        6: "stage_lb",
    }
    source = (BPF_DIR / "datapath.c").read_text()
    for name in slots.values():
        assert re.search(rf"^int {name}\(struct __sk_buff \*skb\)$", source, re.MULTILINE), name


def test_config_becomes_defines() -> None:
    config = DatapathConfig(caplen=64, ring_buffer_pages=8, wakeup_every=16)
    flags = cflags(config)
    assert f"-I{BPF_DIR / 'include'}" in flags
    assert {"-DFS_CAPLEN=64", "-DFS_RINGBUF_PAGES=8", "-DFS_WAKEUP_EVERY=16"} <= set(flags)


@pytest.mark.parametrize(
    "kwargs",
    [{"caplen": 100}, {"caplen": 0}, {"caplen": 8192}, {"ring_buffer_pages": 3}, {"wakeup_every": 0}],
)
def test_config_refuses_what_cannot_compile(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DatapathConfig(**kwargs)


def test_the_datapaths_own_report_interval_is_the_agents_default() -> None:
    """report_interval_ms 0 (a config never written) means FS_REPORT_INTERVAL_MS_DEFAULT: the same as the
    agent's default, so a datapath with no settings and one with the defaults report equally often."""
    header = (BPF_DIR / "include" / "flowscope" / "config.h").read_text()
    [value] = re.findall(r"^#define FS_REPORT_INTERVAL_MS_DEFAULT (\d+)$", header, re.MULTILINE)
    assert int(value) == AggregationSettings().interval_ms


def test_the_headers_own_capture_length_is_the_agents_default() -> None:
    """The loaders always pass -DFS_CAPLEN; the header's fallback (for a compile without it) says the same."""
    header = (BPF_DIR / "include" / "flowscope" / "event.h").read_text()
    [value] = re.findall(r"^#define FS_CAPLEN (\d+)\b", header, re.MULTILINE)
    assert int(value) == DEFAULT_CAPLEN


@pytest.mark.parametrize(
    ("network", "prefixlen", "addr"),
    [
        ("10.1.0.0/16", 112, bytes(10) + b"\xff\xff" + bytes([10, 1, 0, 0])),
        ("192.0.2.7/32", 128, bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 7])),
        ("0.0.0.0/0", 96, bytes(10) + b"\xff\xff" + bytes(4)),
        ("2001:db8::/32", 32, ipaddress.ip_address("2001:db8::").packed),
        ("::/0", 0, bytes(16)),
    ],
)
def test_ipcache_keys_map_ipv4_into_ipv6(network: str, prefixlen: int, addr: bytes) -> None:
    net = ipaddress.ip_network(network)
    assert ipcache_key(net) == (prefixlen, addr)
    assert ipcache_network(prefixlen, addr) == net
