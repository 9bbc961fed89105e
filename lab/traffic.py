"""The lab's traffic: real programs (curl, dig, ping, the echo clients) run in pods and the world, forever.

Each round runs every probe once, one after another, then pauses about a second, so a flow observer sees a
steady mix: HTTP over IPv4 and IPv6 (through the web/web service's ClusterIPs, and straight to a pod; pages, 404
and 500 answers), HTTPS naming the service in its ClientHello (SNI), DNS over UDP and TCP (through kube-dns's
ClusterIPs) (answers and NXDOMAIN), ICMP echo both ways, a TCP request/response, UDP datagrams, the world
reaching a pod and pods reaching the world. With two nodes or more the client's traffic to the server and web
pods crosses nodes. One summary line a round goes to the log, and the output of any probe that failed.

    python -m lab.traffic --name lab --nodes 1 [--interval 1.0] [--rounds 0 (forever)]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from flowscope.lab.netns import exec_argv
from flowscope.lab.services import certificate_file, web_service_name
from flowscope.lab.topology import DOMAIN, TCP_RR_PORT, UDP_ECHO_PORT, Topology, plan
from flowscope.observer.metadata import Service


@dataclass(frozen=True)
class Probe:
    name: str
    netns: str
    argv: list[str]


def probes(topology: Topology, python: str = sys.executable, services: bool = False) -> list[Probe]:
    """What one round runs, found by the pods' roles (labels), so it works for any number of nodes; with
    `services`, HTTP and DNS go through the lab's Services (their ClusterIPs), which the agents translate."""
    client = topology.pod_with("app", "client")
    server = topology.pod_with("app", "server")
    dns = topology.pod_with("k8s-app", "kube-dns")
    web = topology.pod_with("app", "web")
    if services:  # web/web's backends: the web pods, on different nodes with two or more
        web_service, dns_service = topology.service("web/web"), topology.service("kube-system/kube-dns")
        web_to, web_v4, web_v6 = "web/web service", _v4(web_service), _v6(web_service)
        dns_to, dns_v4, dns_v6 = "kube-dns service", _v4(dns_service), _v6(dns_service)
    else:
        web_to, web_v4, web_v6 = "web", web.ipv4, web.ipv6
        dns_to, dns_v4, dns_v6 = "coredns", dns.ipv4, dns.ipv6
    world = topology.world
    curl = ["curl", "--silent", "--show-error", "--output", "/dev/null", "--max-time", "2", "--globoff"]
    dig = ["dig", "+time=1", "+tries=1"]
    echo = [python, "-m", "flowscope.lab.echo_servers"]
    # curl resolves the service's name to the address chosen here, so the ClientHello names the server (SNI)
    # and the answer is verified against the lab's certificate.
    web_name = web_service_name(topology)
    https = [*curl, "--cacert", str(certificate_file(topology)), "--resolve", f"{web_name}:443:{web_v4}"]

    def ping(address: str) -> list[str]:
        return ["ping", "-c", "1", "-W", "1", address]

    return [
        Probe(f"http client->{web_to} v4", client.netns, [*curl, f"http://{web_v4}/"]),
        Probe(f"http client->{web_to} v6", client.netns, [*curl, f"http://[{web_v6}]/"]),
        Probe("http client->web pod v4", client.netns, [*curl, f"http://{web.ipv4}/"]),
        Probe(f"http client->{web_to} 404", client.netns, [*curl, f"http://{web_v4}/status/404"]),
        Probe(f"http client->{web_to} 500", client.netns, [*curl, f"http://{web_v4}/status/500"]),
        Probe(f"https client->{web_to}", client.netns, [*https, f"https://{web_name}/"]),
        Probe(f"dns client->{dns_to} A", client.netns, [*dig, f"@{dns_v4}", server.fqdn, "A"]),
        Probe(f"dns client->{dns_to} AAAA v6", client.netns, [*dig, f"@{dns_v6}", web.fqdn, "AAAA"]),
        Probe(f"dns client->{dns_to} tcp", client.netns, [*dig, "+tcp", f"@{dns_v4}", web.fqdn, "A"]),
        Probe("dns client->coredns nxdomain", client.netns, [*dig, f"@{dns.ipv4}", f"nosuch.default.{DOMAIN}."]),
        Probe("ping client->server v4", client.netns, ping(server.ipv4)),
        Probe("ping client->server v6", client.netns, ping(server.ipv6)),
        Probe("tcp client->server v4", client.netns, [*echo, "request", server.ipv4, "--port", str(TCP_RR_PORT)]),
        Probe("tcp client->server v6", client.netns, [*echo, "request", server.ipv6, "--port", str(TCP_RR_PORT)]),
        Probe(
            "udp client->server v4",
            client.netns,
            [*echo, "datagram", server.ipv4, "--port", str(UDP_ECHO_PORT)],
        ),
        Probe(
            "udp client->server v6",
            client.netns,
            [*echo, "datagram", server.ipv6, "--port", str(UDP_ECHO_PORT)],
        ),
        Probe("http world->web v4", world.netns, [*curl, f"http://{web.ipv4}/"]),
        Probe("http web->world v6", web.netns, [*curl, f"http://[{world.ipv6}]/"]),
        Probe("ping client->world v4", client.netns, ping(world.ipv4)),
    ]


def _v4(service: Service) -> str:
    return next(ip for ip in service.cluster_ips if ":" not in ip)


def _v6(service: Service) -> str:
    return next(ip for ip in service.cluster_ips if ":" in ip)


def run_round(round_probes: list[Probe], timeout: float = 5.0) -> list[str]:
    """Run every probe once; the failures, described."""
    failures = []
    for probe in round_probes:
        try:
            done = subprocess.run(
                exec_argv(probe.netns, probe.argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{probe.name}: timed out")
            continue
        if done.returncode != 0:
            failures.append(f"{probe.name}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return failures


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through subprocess.run, which kills the probe in flight on the way out.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="lab")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0, help="pause between rounds, in seconds")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: never)")
    parser.add_argument("--services", action="store_true", help="HTTP and DNS through the lab's Services")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    round_probes = probes(plan(args.name, args.nodes), services=args.services)
    number = 0
    while args.rounds == 0 or number < args.rounds:
        number += 1
        started = time.monotonic()
        failures = run_round(round_probes)
        took = time.monotonic() - started
        ok = len(round_probes) - len(failures)
        print(f"round {number}: {ok}/{len(round_probes)} ok in {took:.2f}s", flush=True)
        for failure in failures:
            print(f"  {failure}", flush=True)
        time.sleep(args.interval * random.uniform(0.8, 1.2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
