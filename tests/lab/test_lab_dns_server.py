"""The lab's DNS server at the wire level: queries built by hand, answers taken apart byte by byte."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from flowscope.lab.dns_server import (
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_OPT,
    Zone,
    encode_name,
    respond,
)
from flowscope.lab.topology import plan

MX = 15


def query(name: str, qtype: int, qid: int = 0x1234, edns: bool = False, opcode: int = 0) -> bytes:
    flags = 0x0100 | (opcode << 11)  # recursion desired, as dig sends
    header = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    opt = b"\0" + struct.pack("!HHIH", TYPE_OPT, 4096, 0, 0) if edns else b""
    return header + encode_name(name) + struct.pack("!HH", qtype, 1) + opt


def parse(response: bytes) -> tuple[int, int, list[tuple[int, str]], int]:
    """(id, rcode, [(type, address)], additional count) of a response to a query from `query`."""
    qid, flags, qdcount, ancount, _, arcount = struct.unpack_from("!HHHHHH", response)
    assert flags & 0x8000, "not a response"
    offset = 12
    for _ in range(qdcount):
        while response[offset]:
            offset += response[offset] + 1
        offset += 5
    answers = []
    for _ in range(ancount):
        pointer, rtype, rclass, _ttl, length = struct.unpack_from("!HHHIH", response, offset)
        assert pointer == 0xC00C and rclass == 1
        offset += 12
        answers.append((rtype, str(ipaddress.ip_address(response[offset : offset + length]))))
        offset += length
    return qid, flags & 0xF, answers, arcount


@pytest.fixture
def zone(tmp_path: Path) -> Zone:
    cluster_file = tmp_path / "cluster.json"
    plan("t1", 2).cluster().save(cluster_file)
    return Zone(cluster_file)


def test_a_and_aaaa(zone: Zone) -> None:
    response = respond(query("web.web.pod.lab.", TYPE_A), zone)
    assert response is not None
    assert parse(response) == (0x1234, NOERROR, [(TYPE_A, "10.200.2.12")], 0)
    response = respond(query("Server.Default.SVC.lab", TYPE_AAAA, qid=7), zone)
    assert response is not None
    assert parse(response) == (7, NOERROR, [(TYPE_AAAA, "fd00:200:2::11")], 0)


def test_any_gives_both_families(zone: Zone) -> None:
    response = respond(query("coredns.kube-system.svc.lab.", TYPE_ANY), zone)
    assert response is not None
    assert parse(response)[2] == [(TYPE_A, "10.200.1.12"), (TYPE_AAAA, "fd00:200:1::12")]


def test_unknown_names_are_nxdomain_and_other_types_are_empty(zone: Zone) -> None:
    response = respond(query("nosuch.default.svc.lab.", TYPE_A), zone)
    assert response is not None
    assert parse(response)[1:3] == (NXDOMAIN, [])
    response = respond(query("web.web.svc.lab.", MX), zone)
    assert response is not None
    assert parse(response)[1:3] == (NOERROR, [])


def test_edns_queries_get_an_opt_record_back(zone: Zone) -> None:
    response = respond(query("web.web.svc.lab.", TYPE_A, edns=True), zone)
    assert response is not None
    assert parse(response)[3] == 1
    assert response.endswith(b"\0" + struct.pack("!HHIH", TYPE_OPT, 1232, 0, 0))


def test_answers_are_authoritative_and_echo_the_question(zone: Zone) -> None:
    message = query("web.web.svc.lab.", TYPE_A)
    response = respond(message, zone)
    assert response is not None
    flags = struct.unpack_from("!H", response, 2)[0]
    assert flags & 0x0400  # authoritative
    assert flags & 0x0100  # recursion desired, copied
    assert response[12 : len(message)] == message[12:]


def test_bad_messages(zone: Zone) -> None:
    assert respond(b"\x01\x02", zone) is None  # no header to answer
    response = respond(query("web.web.svc.lab.", TYPE_A)[:15], zone)  # cut short
    assert response is not None
    assert parse(response)[1] == FORMERR
    response = respond(query("web.web.svc.lab.", TYPE_A, opcode=2), zone)  # a status request
    assert response is not None
    assert parse(response)[1] == NOTIMP
    reply = respond(query("web.web.svc.lab.", TYPE_A), zone)
    assert reply is not None
    assert respond(reply, zone) is None  # never answer an answer


def test_the_zone_follows_the_cluster_file(zone: Zone) -> None:
    assert zone.lookup("client.default.svc.lab.") == [
        ipaddress.ip_address("10.200.1.11"),
        ipaddress.ip_address("fd00:200:1::11"),
    ]
    plan("t1", 1).cluster().save(zone.cluster_file)
    assert zone.lookup("web.web.pod.lab.") == [
        ipaddress.ip_address("10.200.1.14"),
        ipaddress.ip_address("fd00:200:1::14"),
    ]


@pytest.mark.parametrize(
    ("name", "addresses"),
    [
        ("web.web.svc.lab.", [(TYPE_A, "10.96.16.153"), (TYPE_AAAA, "fd96::1099")]),
        ("kube-dns.kube-system.svc.lab.", [(TYPE_A, "10.96.77.224"), (TYPE_AAAA, "fd96::4de0")]),
        ("server-np.default.svc.lab.", [(TYPE_A, "10.96.176.17"), (TYPE_AAAA, "fd96::b011")]),
    ],
)
def test_services_resolve_to_their_cluster_ips(zone: Zone, name: str, addresses: list[tuple[int, str]]) -> None:
    response = respond(query(name, TYPE_ANY), zone)
    assert response is not None
    assert parse(response) == (0x1234, NOERROR, addresses, 0)


def test_a_service_takes_its_name_from_a_pod_of_the_same_name_in_the_svc_zone_only(zone: Zone) -> None:
    """web/web is a service and a pod: `svc` is the service's, `pod` the pod's; other pods are in both zones."""
    assert zone.lookup("web.web.svc.lab.") == [ipaddress.ip_address("10.96.16.153"), ipaddress.ip_address("fd96::1099")]
    assert zone.lookup("web.web.pod.lab.") == [
        ipaddress.ip_address("10.200.2.12"),
        ipaddress.ip_address("fd00:200:2::12"),
    ]
    web_2 = [ipaddress.ip_address("10.200.1.13"), ipaddress.ip_address("fd00:200:1::13")]
    assert zone.lookup("web2.web.svc.lab.") == zone.lookup("web2.web.pod.lab.") == web_2


def test_a_service_left_out_for_its_errors_has_no_name(zone: Zone) -> None:
    cluster = plan("t1", 2).cluster()
    client = next(ep for ep in cluster.endpoints if ep.pod == "client")
    bad = replace(cluster.services[0], name="stolen", cluster_ips=(client.ipv4,))
    replace(cluster, services=(*cluster.services, bad)).save(zone.cluster_file)
    assert zone.lookup("stolen.web.svc.lab.") is None
    assert zone.lookup("web.web.svc.lab.") is not None
