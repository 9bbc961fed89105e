"""Which programs a lab runs, and where: servers in their pods, the traffic generator on the underlay.

Every daemon here runs inside one of the lab's namespaces, never in the root one, so removing the lab's
namespaces (and killing what runs in them) removes all of it even when nobody remembers a pid. (The lab's
relay is the exception: it serves the root namespace, see lab/relay.py.)
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from flowscope.lab.topology import (
    DNS_PORT,
    DOMAIN,
    HTTP_PORT,
    HTTPS_PORT,
    TCP_RR_PORT,
    UDP_ECHO_PORT,
    Host,
    Pod,
    Topology,
)


@dataclass(frozen=True)
class Service:
    role: str
    netns: str
    argv: list[str]
    ports: tuple[tuple[str, int], ...] = ()  # (protocol, port) it is ready when bound to
    host_mounts: bool = False  # keep the host's /sys (bpffs, tracefs): see lab.netns.exec_argv


def servers(topology: Topology, python: str = sys.executable) -> list[Service]:
    """The cluster DNS, the web pods' and the world's HTTP and HTTPS servers, and the server pod's echo servers."""
    dns = topology.pod_with("k8s-app", "kube-dns")
    server = topology.pod_with("app", "server")
    http = [
        Service(
            f"http-{host.name}",
            host.netns,
            [
                python,
                "-m",
                "flowscope.lab.http_server",
                "--directory",
                str(www_dir(topology, host)),
                "--cert",
                str(certificate_file(topology)),
                "--key",
                str(key_file(topology)),
            ],
            (("tcp", HTTP_PORT), ("tcp", HTTPS_PORT)),
        )
        for host in web_hosts(topology)
    ]
    return [
        Service(
            "dns",
            dns.netns,
            [
                python,
                "-m",
                "flowscope.lab.dns_server",
                "--cluster-file",
                str(topology.cluster_file),
                "--port",
                str(DNS_PORT),
            ],
            (("udp", DNS_PORT), ("tcp", DNS_PORT)),
        ),
        *http,
        Service(
            "echo",
            server.netns,
            [
                python,
                "-m",
                "flowscope.lab.echo_servers",
                "serve",
                "--tcp-port",
                str(TCP_RR_PORT),
                "--udp-port",
                str(UDP_ECHO_PORT),
            ],
            (("tcp", TCP_RR_PORT), ("udp", UDP_ECHO_PORT)),
        ),
    ]


def traffic_generator(topology: Topology, python: str = sys.executable, services: bool = True) -> Service:
    """The generator lives in the underlay namespace and reaches into pods with `ip netns exec`. `services`: its
    probes go through the lab's Services too, which only the agents' datapath translates (a lab without agents
    has no service load-balancing, as a cluster without kube-proxy or Cilium has none)."""
    argv = [python, "-m", "flowscope.lab.traffic", "--name", topology.name, "--nodes", str(len(topology.nodes))]
    return Service("traffic", topology.underlay_netns, [*argv, *(["--services"] if services else [])])


def web_hosts(topology: Topology) -> list[Pod | Host]:
    """Where an HTTP server runs: the web service's pods, and the world host."""
    return [*(pod for pod in topology.pods if pod.labels.get("app") == "web"), topology.world]


def www_dir(topology: Topology, host: Pod | Host) -> Path:
    return topology.state_dir / "www" / host.name


def certificate_file(topology: Topology) -> Path:
    """The lab's HTTPS certificate, which a client trusts to verify any of its servers (`curl --cacert`)."""
    return topology.state_dir / "tls" / "cert.pem"


def key_file(topology: Topology) -> Path:
    """Its private key: beside it, outside every www directory, so no server hands it out."""
    return topology.state_dir / "tls" / "key.pem"


def write_www(topology: Topology) -> None:
    """What the web servers serve: each one's page, and the certificate they share.

    The page names the lab and the host that served it, so a client of the web service can tell which backend
    answered."""
    for host in web_hosts(topology):
        www = www_dir(topology, host)
        www.mkdir(parents=True, exist_ok=True)
        page = f"<!doctype html><title>flowscope lab {topology.name}</title><p>hello from {host.name}</p>\n"
        (www / "index.html").write_text(page)
    write_certificate(topology)


def web_service_name(topology: Topology) -> str:
    """The name HTTPS clients of the web service ask for (and send as the TLS server name): web.web.svc.lab."""
    web = topology.service("web/web")
    return f"{web.name}.{web.namespace}.{DOMAIN}"


def certificate_names(topology: Topology) -> list[str]:
    """Every name and address a client may reach an HTTPS server by: each web pod's DNS name and addresses, the
    web service's name and ClusterIPs, and the world host's name and addresses."""
    web = topology.service("web/web")
    names = [f"DNS:{web_service_name(topology)}", *(f"IP:{ip}" for ip in web.cluster_ips)]
    for host in web_hosts(topology):
        name = host.fqdn.rstrip(".") if isinstance(host, Pod) else host.name
        names += [f"DNS:{name}", f"IP:{host.ipv4}", f"IP:{host.ipv6}"]
    return names


def write_certificate(topology: Topology) -> None:
    """One self-signed certificate (P-256, 30 days) for every HTTPS server of the lab, made anew by each `lab
    up`: one file lets a client verify whichever backend of the web service answers."""
    cert, key = certificate_file(topology), key_file(topology)
    cert.parent.mkdir(parents=True, exist_ok=True)
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    argv += ["-days", "30", "-subj", f"/O=flowscope lab/CN={topology.name}"]
    argv += ["-addext", f"subjectAltName={','.join(certificate_names(topology))}"]
    done = subprocess.run([*argv, "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl could not make the lab's certificate: {done.stderr.strip()}")
