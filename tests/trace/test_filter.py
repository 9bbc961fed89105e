"""A trace session's filter compiled into the datapath's terms (observer/trace/filter.py): exact term lists and
bytes, refusals word for word, pods, Hubble filters ANDed with pcap; the clauses checked against the expression
they came from on thousands of random packets, and against libpcap itself (tcpdump reading the same packets).
"""

from __future__ import annotations

import ipaddress
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from filter_reference import V4, V6, Packet, evaluate, matches, pcap_file, random_packet

from flowscope.api.flow import flow_pb2
from flowscope.observer.datapath.c_source import BPF_DIR
from flowscope.observer.trace.filter import FilterError, compile_filter
from flowscope.observer.trace.pcap_filter import SUPPORTED, parse_pcap
from flowscope.observer.trace.terms import TERM_SIZE, TERMS_MAX, All, AnyOf, Expr, Field, Not, Term, dnf, encode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Pods:
    """Two pods, as the agent's registry would resolve them."""

    def pod_addresses(self, namespace: str, pod: str) -> Sequence[IPAddress]:
        known = {
            ("default", "client"): ["10.200.1.11", "fd00:200:1::11"],
            ("shop", "web"): ["10.200.2.22"],
        }
        return [ipaddress.ip_address(ip) for ip in known.get((namespace, pod), [])]


def pcap(expression: str) -> str:
    return compile_filter([], expression, Pods()).text


def flows(*filters: flow_pb2.FlowFilter, expression: str = "") -> str:
    return compile_filter(list(filters), expression, Pods()).text


def refusal(expression: str = "", *filters: flow_pb2.FlowFilter) -> str:
    with pytest.raises(FilterError) as caught:
        compile_filter(list(filters), expression, Pods())
    return str(caught.value)


# -- the header and the bytes


def test_fields_are_the_headers() -> None:
    header = (BPF_DIR / "include" / "flowscope" / "trace.h").read_text()
    defined = {name: int(value) for name, value in re.findall(r"#define FS_TF_(\w+) (\d+)", header)}
    assert defined == {field.name: field.value for field in Field}
    assert TERMS_MAX == 24
    assert TERM_SIZE == 40  # 4 one-byte fields, two __u16, two 16-byte arrays


def test_encode_is_the_term_array_zero_padded() -> None:
    terms = compile_filter([], "src net 10.0.0.0/8 or tcp[tcpflags] & tcp-syn != 0", Pods()).terms
    assert terms == (
        Term(Field.SRC_ADDR, family=4, addr=bytes([10]) + bytes(15), mask=bytes([255]) + bytes(15)),
        Term(Field.OR),
        Term(Field.PROTO, lo=6),
        Term(Field.TCP_FLAGS, negate=True, lo=2, hi=0),
    )
    data = encode(terms)
    assert len(data) == TERMS_MAX * TERM_SIZE
    assert data[:40] == bytes([1, 0, 4, 0, 0, 0, 0, 0, 10]) + bytes(15) + bytes([255]) + bytes(15)
    assert data[40:80] == bytes(40)
    assert data[80:88] == bytes([7, 0, 0, 0, 6, 0, 0, 0])
    assert data[120:128] == bytes([8, 1, 0, 0, 2, 0, 0, 0])
    assert data[160:] == bytes(len(data) - 160)
    v6 = compile_filter([], "dst net fd00:1::/32", Pods()).terms[0]
    assert encode([v6])[:40] == bytes([2, 0, 6, 0, 0, 0, 0, 0]) + bytes.fromhex(
        "fd000001" + "00" * 12 + "ffffffff" + "00" * 12
    )
    assert encode([]) == bytes(TERMS_MAX * TERM_SIZE)


# -- pcap expressions, term by term


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("", "every packet"),
        ("host 10.0.0.1", "host 10.0.0.1"),
        ("src 10.0.0.1", "src host 10.0.0.1"),
        ("dst host fd00::1", "dst host fd00::1"),
        ("src or dst host 10.0.0.1", "host 10.0.0.1"),
        ("src and dst host 10.0.0.1", "src host 10.0.0.1 and dst host 10.0.0.1"),
        ("net 10.1.0.0/16", "net 10.1.0.0/16"),
        ("src net 10.1.0.0 mask 255.255.0.0", "src net 10.1.0.0/16"),
        ("port 80", "port 80"),
        ("dst port 53", "dst port 53"),
        ("portrange 1000-2000", "portrange 1000-2000"),
        ("src portrange 2000-1000", "src portrange 1000-2000"),
        ("tcp port 80", "tcp and port 80"),
        ("udp dst port 53", "udp and dst port 53"),
        ("tcp", "tcp"),
        ("icmp or icmp6", "icmp or icmp6"),
        ("ip", "ip"),
        ("ip6 and sctp", "ip6 and sctp"),
        ("proto 47", "proto 47"),
        ("ip proto 17", "ip and udp"),
        ("ip6 proto \\tcp", "ip6 and tcp"),
        ("host 10.0.0.1 or 10.0.0.2", "host 10.0.0.1 or host 10.0.0.2"),
        ("dst port 80 or 443", "dst port 80 or dst port 443"),
        ("tcp[tcpflags] & (tcp-syn|tcp-ack) != 0", "tcp and not tcp[tcpflags] & (tcp-syn|tcp-ack) == 0"),
        ("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"),
        ("tcp[13] & 0x12 = 2", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"),
        ("tcp[13] & 4 != 0", "tcp and not tcp[tcpflags] & tcp-rst == 0"),
        (
            "tcp[tcpflags] == tcp-syn",
            "tcp[tcpflags] & ("
            + "|".join(("tcp-fin", "tcp-syn", "tcp-rst", "tcp-push", "tcp-ack", "tcp-urg", "tcp-ece", "tcp-cwr"))
            + ") == tcp-syn",
        ),
        ("not tcp", "not tcp"),
        ("! (tcp || udp)", "not tcp and not udp"),
        ("not (host 10.0.0.1 and port 80)", "not host 10.0.0.1 or not port 80"),
        (
            "(host 10.0.0.1 or host 10.0.0.2) && (port 80 or port 443)",
            "(host 10.0.0.1 and port 80) or (host 10.0.0.1 and port 443) or (host 10.0.0.2 and port 80) "
            "or (host 10.0.0.2 and port 443)",
        ),
        ("tcp and tcp", "tcp"),
        ("tcp or (tcp and port 80)", "tcp"),
        ("udp or (tcp and not tcp)", "udp"),
        ("TCP AND PORT 80", "tcp and port 80"),
    ],
)
def test_pcap_terms(expression: str, text: str) -> None:
    assert pcap(expression) == text
    if text != "every packet":
        assert pcap(text) == text  # the rendering reads back to the same terms


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("ether host 02:00:00:00:00:01", "'ether' is not supported"),
        ("vlan 100", "'vlan' is not supported"),
        ("len > 100", "'len' is not supported"),
        ("greater 100", "'greater' is not supported"),
        ("host example.com", "'example.com' is not an IP address (names are not resolved)"),
        ("host 10.0.0.0/8", "host 10.0.0.0/8: a host is one address (net takes a CIDR)"),
        ("net 10.0.0.1/8", "net 10.0.0.1/8: 10.0.0.1/8 has host bits set"),
        ("net 10.0.0", "net 10.0.0: a network is a CIDR (10.0.0.0/8) or an address with a mask"),
        ("port http", "port: 'http' is not a port number (0-65535)"),
        ("port 70000", "port: '70000' is not a port number (0-65535)"),
        ("portrange 80", "portrange 80: a range is N-M"),
        ("tcp host 10.0.0.1", "unexpected 'host'"),
        ("tcp[2] & 1 != 0", "tcp[2]: only tcp[tcpflags] (tcp[13]) can be tested"),
        ("tcp[tcpflags] & tcp-syn > 0", "'>' after tcp[tcpflags]: only == and != are supported"),
        ("tcp[tcpflags] & tcp-syn == tcp-ack", "tcp[tcpflags] & 0x02 == 0x10 compares bits the mask clears"),
        (
            "tcp[tcpflags] & tcp-nope != 0",
            "'tcp-nope' is not a TCP flag (tcp-fin, tcp-syn, tcp-rst, tcp-push, "
            "tcp-ack, tcp-urg, tcp-ece, tcp-cwr, or a number 0-255)",
        ),
        ("proto 300", "proto 300: a protocol is a number 0-255 or one of tcp, udp, sctp, icmp, icmp6"),
        ("(tcp", "expected ')' at the end"),
        ("tcp and", "it ends too soon"),
        ("tcp udp", "unexpected 'udp'"),
        ("80", "'80' is not an IP address (names are not resolved)"),
    ],
)
def test_pcap_refusals(expression: str, reason: str) -> None:
    assert refusal(expression) == f"pcap filter: {reason} (supported: {SUPPORTED})"


def test_never_matching_and_too_long() -> None:
    assert refusal("tcp and not tcp") == (
        "the filter can match no packet (it asks for a term and its opposite together)"
    )
    # 3 x 3 x 3 alternatives of 3 terms each, with 26 separators
    big = "(port 1 or port 2 or port 3) and (host 10.0.0.1 or host 10.0.0.2 or host 10.0.0.3) and (tcp or udp or sctp)"
    assert refusal(big) == (
        "the filter expands to 107 terms, more than the datapath's 24 (27 alternatives of ANDed terms); write a "
        "simpler filter, e.g. fewer values ORed inside an AND, or a CIDR for several addresses"
    )
    huge = " and ".join(f"(port {n} or host 10.0.0.{n})" for n in range(1, 14))
    assert refusal(huge) == (
        "the filter expands to more than 4096 alternatives, far more than the datapath's 24 terms can hold; "
        "write a simpler filter"
    )


# -- Hubble's flow filters


def test_flow_filter_fields() -> None:
    ff = flow_pb2.FlowFilter
    assert flows(ff(source_ip=["10.0.0.1", "fd00::/64"])) == "src host 10.0.0.1 or src net fd00::/64"
    assert flows(ff(destination_ip=["10.1.0.0/16"], destination_port=["80"], protocol=["TCP"])) == (
        "dst net 10.1.0.0/16 and dst port 80 and tcp"
    )
    assert flows(ff(source_port=["53"], protocol=["icmp"])) == ("(src port 53 and icmp) or (src port 53 and icmp6)")
    assert flows(ff(protocol=["icmpv4", "udp"])) == "icmp or udp"
    assert flows(ff(tcp_flags=[flow_pb2.TCPFlags(SYN=True), flow_pb2.TCPFlags(SYN=True, ACK=True)])) == (
        "tcp[tcpflags] & tcp-syn == tcp-syn or tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"
    )
    assert flows(ff(ip_version=[flow_pb2.IPv6])) == "ip6"
    assert flows(ff(ip_version=[flow_pb2.IP_NOT_USED])) == "not ip and not ip6"
    # OR across filters
    assert flows(ff(source_ip=["10.0.0.1"]), ff(destination_port=["53"])) == "src host 10.0.0.1 or dst port 53"


def test_pods_resolve_to_their_addresses() -> None:
    ff = flow_pb2.FlowFilter
    assert flows(ff(source_pod=["client"])) == "src host 10.200.1.11 or src host fd00:200:1::11"
    assert flows(ff(source_pod=["default/client"], destination_pod=["shop/web"])) == (
        "(src host 10.200.1.11 and dst host 10.200.2.22) or (src host fd00:200:1::11 and dst host 10.200.2.22)"
    )
    assert refusal("", ff(source_pod=["shop/nope"])) == (
        "invalid source pod filter 'shop/nope': no pod shop/nope is known to this node"
    )
    assert refusal("", ff(destination_pod=["shop/"])) == (
        "invalid destination pod filter 'shop/': a trace picks the packets of one pod, named exactly"
    )
    assert refusal("", ff(source_pod=["a/b/c"])) == (
        "invalid source pod filter 'a/b/c': must be [namespace/][<name>], with one slash"
    )


def test_flow_filters_and_pcap_both_hold() -> None:
    ff = flow_pb2.FlowFilter
    assert flows(ff(source_pod=["shop/web"]), ff(destination_ip=["10.9.9.9"]), expression="tcp port 80 or icmp") == (
        "(src host 10.200.2.22 and tcp and port 80) or (src host 10.200.2.22 and icmp) or "
        "(dst host 10.9.9.9 and tcp and port 80) or (dst host 10.9.9.9 and icmp)"
    )
    assert refusal("not dst port 53", ff(destination_port=["53"])) == (
        "the filter can match no packet (it asks for a term and its opposite together)"
    )


def test_flow_filter_refusals() -> None:
    ff = flow_pb2.FlowFilter
    supported = (
        "source_ip, destination_ip, source_pod, destination_pod, source_port, destination_port, protocol, "
        "tcp_flags, ip_version"
    )
    for field, flow_filter in [
        ("verdict", ff(verdict=[flow_pb2.DROPPED])),
        ("source_label", ff(source_label=["app=web"])),
        ("node_name", ff(node_name=["n1"])),
    ]:
        assert refusal("", flow_filter) == (
            f"flow filter field {field} cannot pick packets in the datapath: a trace picks a packet by its headers "
            f"as it enters, before {field} is known (supported: {supported})"
        )
    assert refusal("", ff(source_ip=["10.0.0.300"])) == "invalid source IP filter: '10.0.0.300' is not an IP address"
    assert refusal("", ff(destination_port=["8o"])) == (
        "invalid destination port filter: '8o' is not a port number (0-65535)"
    )
    assert refusal("", ff(protocol=["http"])) == (
        "protocol http cannot pick packets in the datapath: it is an L7 protocol, not in headers"
    )
    assert refusal("", ff(tcp_flags=[flow_pb2.TCPFlags(NS=True)])) == (
        "tcp_flags NS cannot pick packets in the datapath: it keeps only the FIN ... CWR byte"
    )


# -- the clauses against the expression, and against libpcap


def _random_expr(rng: random.Random, depth: int) -> Expr:
    if depth == 0 or rng.random() < 0.3:
        return parse_pcap(_random_primitive(rng))
    kind = rng.choice(("all", "any", "not"))
    if kind == "not":
        return Not(_random_expr(rng, depth - 1))
    parts = tuple(_random_expr(rng, depth - 1) for _ in range(rng.randint(2, 3)))
    return All(parts) if kind == "all" else AnyOf(parts)


def _random_primitive(rng: random.Random) -> str:
    address = rng.choice(V4 + V6)
    prefix = rng.choice((8, 16, 24)) if address.version == 4 else rng.choice((16, 32, 64))
    net = ipaddress.ip_network((address, prefix), strict=False)
    port = rng.choice((53, 80, 443, 1000, 1500, 2000, 8080))
    flags = rng.randrange(256)
    return rng.choice(
        [
            f"{rng.choice(('', 'src ', 'dst ', 'src and dst '))}host {address}",
            f"{rng.choice(('', 'src ', 'dst '))}net {net}",
            f"{rng.choice(('', 'tcp ', 'udp '))}{rng.choice(('', 'src ', 'dst '))}port {port}",
            f"portrange {port}-{port + rng.choice((0, 500, 2000))}",
            rng.choice(("tcp", "udp", "sctp", "icmp", "icmp6", "ip", "ip6", "ip proto 6", "proto 17")),
            f"tcp[tcpflags] & {flags} {rng.choice(('==', '!='))} {flags & rng.randrange(256)}",
        ]
    )


def test_clauses_agree_with_the_expression_on_random_packets() -> None:
    rng = random.Random(12)
    packets = [random_packet(rng) for _ in range(300)]
    checked = 0
    for _ in range(400):
        expr = _random_expr(rng, depth=3)
        try:
            clauses = dnf(expr)
        except FilterError:
            continue  # too many alternatives: refused, nothing to compare
        terms = tuple(term for clause in clauses for term in (Term(Field.OR), *clause))[1:] if clauses else None
        for packet in packets:
            expected = evaluate(expr, packet)
            got = bool(clauses) and (clauses == [()] or matches(terms or (), packet))
            assert got == expected, (expr, packet)
        checked += 1
    assert checked > 300


LIBPCAP_EXPRESSIONS = [
    "host 10.0.0.1",
    "src host fd00::1 or dst net 10.0.0.0/16",
    "src and dst net 10.0.0.0/8",
    "not host 192.168.7.7",
    "net fd00::/16 and not src host fd00::2",
    "port 80",
    "not port 80",
    "tcp dst port 443 or udp src port 53",
    "portrange 1000-1500",
    "src portrange 53-443 and not tcp",
    "tcp or icmp",
    "sctp or icmp6",
    "ip and not udp",
    "ip6 and not (tcp or udp)",
    "proto 132",
    "ip proto 6",
    "ip6 proto 17",
    "not ip and not ip6",
    "(host 10.0.0.1 or host fd00::1) and (port 80 or port 8080)",
    "not (src net 10.0.0.0/24 and dst port 53)",
    "ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "ip and tcp[tcpflags] & (tcp-fin|tcp-rst) != 0",
    "ip and not tcp[13] & 0x12 = 0x12",
]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_terms_pick_what_libpcap_picks(tmp_path: Path) -> None:
    """tcpdump reads the same packets with the same expression. (libpcap's tcp[...] reads IPv4 only, so the flag
    expressions say `ip and`; flowscope tests IPv6 TCP flags as well.)"""
    rng = random.Random(7)
    packets = [random_packet(rng) for _ in range(600)]
    capture = pcap_file(packets)
    for expression in LIBPCAP_EXPRESSIONS:
        terms = compile_filter([], expression, Pods()).terms
        ours = {number for number, packet in enumerate(packets, start=1) if matches(terms, packet)}
        assert ours == _tcpdump(capture, expression), expression
        assert 0 < len(ours) < len(packets), expression  # the expression tells packets apart


def _tcpdump(capture: bytes, expression: str) -> set[int]:
    done = subprocess.run(
        ["tcpdump", "-r", "-", "-nn", "-tt", expression],
        input=capture,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return {int(line.split(b".", 1)[0]) for line in done.stdout.splitlines() if line}


def test_packets_without_ip_match_only_negations() -> None:
    arp = Packet(0)
    terms = compile_filter([], "not host 10.0.0.1 and not port 80 and not tcp", Pods()).terms
    assert matches(terms, arp)
    assert not matches(compile_filter([], "not ip and port 80", Pods()).terms, arp)
    assert matches(compile_filter([], "", Pods()).terms, Packet(4, V4[0], V4[1], 6, 1, 2, 0))
