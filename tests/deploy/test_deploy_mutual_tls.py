"""The manifests' relay and agent, each started with its own arguments from deploy/kubernetes/ (certificate
files made here where their Secrets would be mounted), find and read each other over mutual TLS as they would in
a cluster: the relay asks the peer service under the name the manifest gives, the agent announces itself under
Hubble's <node>.<cluster>.hubble-grpc.cilium.io, and one wildcard certificate (docs/kubernetes.md) covers both.

What stands in for the cluster: a lab node is the node; the Service `flowscope-peer` is the node's address
(the relay's --peer-service points at it); the cluster's name is the lab's (the cluster file names it, and so
the names in certificates); the relay runs in the node's network namespace, listening on a port free there.
The agent runs as the manifest's container would: root with only the manifest's capabilities."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_manifests import Container, container, find, parse

from flowscope.lab import Lab
from flowscope.observer.server.peer import TLS_DOMAIN

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
RELAY_PORT = 4245  # free inside the lab node's own network namespace
LAB_FLAGS = ("--node-name", "--cluster-file", "--device", "--socket")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def secret(folder: Path, ca: Path, ca_key: Path, name: str, dns: str, usage: str) -> Path:
    """A Secret's files as Kubernetes mounts them: tls.crt and tls.key signed by the CA, and ca.crt."""
    folder.mkdir()
    (folder / "ext").write_text(f"subjectAltName=DNS:{dns}\nextendedKeyUsage={usage}\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(folder / "tls.key"), "-out", str(folder / "csr"), "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(folder / "csr"), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(folder / "ext"), "-out", str(folder / "tls.crt"),
    )  # fmt: skip
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    return folder


def with_files_at(c: Container, secret: Path, folder: Path) -> list[str]:
    """The container's arguments with its files where this test put them: its TLS Secret's in `secret`, each
    ConfigMap's written out under `folder` (node paths in them, such as flow-log files, moved under `folder` too)."""
    argv = c.argv()
    node_paths = {m["mountPath"]: str(folder / m["name"]) for m in c.spec["volumeMounts"] if m["name"] == "flowlogs"}
    for mount in c.spec["volumeMounts"]:
        volume = next(v for v in c.pod["volumes"] if v["name"] == mount["name"])
        if "secret" in volume:
            target = secret
        elif "configMap" in volume:
            target = folder / mount["name"]
            target.mkdir()
            for key, text in find("ConfigMap", volume["configMap"]["name"])["data"].items():
                for node_path, here in node_paths.items():
                    text = text.replace(node_path, here)
                (target / key).write_text(text)
        else:
            continue
        argv = [arg.replace(mount["mountPath"], str(target)) for arg in argv]
    return argv


def replaced(argv: list[str], flag: str, value: str) -> list[str]:
    return [f"{flag}={value}" if arg.startswith(f"{flag}=") else arg for arg in argv]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    agent = container("flowscope-agent", "agent")
    capabilities = ",".join(["-all", *(f"+{c.lower()}" for c in agent.spec["securityContext"]["capabilities"]["add"])])
    command = ["setpriv", "--bounding-set", capabilities, "--inh-caps", "-all", "--no-new-privs", "--", FLOWSCOPE]
    name = f"t{os.getpid()}-mtls"
    Lab(name).down()
    lab = Lab(name, nodes=1, agent_command=command)
    try:
        yield lab
    finally:
        lab.down()


def test_the_relay_reads_the_agent_over_mutual_tls_as_the_manifests_configure_them(lab: Lab, tmp_path: Path) -> None:
    agent, relay = container("flowscope-agent", "agent"), container("flowscope-relay", "relay")
    cluster = lab.topology.cluster().name
    ca, ca_key = tmp_path / "ca.crt", tmp_path / "ca.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=flowscope test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    agent_secret = secret(tmp_path / "agent", ca, ca_key, "flowscope-agent", f"*.{cluster}.{TLS_DOMAIN}", "serverAuth")
    relay_secret = secret(tmp_path / "relay", ca, ca_key, "flowscope-relay", "flowscope-relay", "clientAuth")

    # The agent: the lab's flags for what is the lab's (node name, cluster file, device, socket), the manifest's
    # for the rest (TLS, listen and metrics addresses, flow logs, compile cache).
    (tmp_path / "agent-files").mkdir()
    (tmp_path / "relay-files").mkdir()
    agent_args = parse(agent.argv())
    manifests = [
        arg
        for arg in with_files_at(agent, agent_secret, tmp_path / "agent-files")[1:]
        if arg.split("=")[0] not in LAB_FLAGS
    ]
    assert len([arg for arg in manifests if arg.startswith("--tls-")]) == 3
    lab.up(traffic=False, agent=False)
    lab.start_agents(extra_args=manifests)

    # The relay: the manifest's arguments; the peer Service is the node's address at the Service's port.
    node = lab.topology.nodes[0]
    service_port = parse(relay.argv()).peer_service.rsplit(":", 1)[1]
    assert int(service_port) == int(agent_args.listen_address.rsplit(":", 1)[1])
    argv = with_files_at(relay, relay_secret, tmp_path / "relay-files")
    argv = replaced(argv, "--peer-service", f"{node.ipv4}:{service_port}")
    server_name = parse(relay.argv()).peer_service_tls_server_name
    argv = replaced(argv, "--peer-service-tls-server-name", server_name.replace(".default.", f".{cluster}."))
    argv = replaced(argv, "--listen-address", f"127.0.0.1:{RELAY_PORT}")
    lab.start(node.name, [FLOWSCOPE, *argv], role="relay", ports=[("tcp", RELAY_PORT)])

    # The relay found the node through the peer service and reads it: its status counts it connected, and a
    # flow of the node comes through it.
    relay_server = f"127.0.0.1:{RELAY_PORT}"
    status = wait_for(
        lab,
        node.name,
        [FLOWSCOPE, "status", "--server", relay_server, "-o", "json"],
        lambda out: '"num_connected_nodes":1' in out,
    )
    assert '"num_unavailable_nodes":0' in status
    client, server = lab.pods[0], lab.pods[1]

    def ping() -> None:
        lab.exec(client.name, ["ping", "-c", "1", "-W", "2", server.ipv4], check=False)

    ping()
    observed = wait_for(
        lab,
        node.name,
        [FLOWSCOPE, "observe", "--server", relay_server, "--last", "50", "--protocol", "icmp", "-o", "json"],
        lambda out: f'"destination":"{server.ipv4}"' in out,
        again=ping,
    )
    assert f'"node_name":"{node.name}"' in observed

    # Port 4244 is the agent's only for clients with a certificate from its CA: without one it is refused.
    agent_tls = [
        "--server", f"tls://{node.ipv4}:{service_port}", "--tls-ca-cert-files", str(ca),
        "--tls-server-name", f"{node.name}.{cluster}.{TLS_DOMAIN}",
    ]  # fmt: skip
    with_cert = [*agent_tls, "--tls-client-cert-file", str(relay_secret / "tls.crt")]
    with_cert += ["--tls-client-key-file", str(relay_secret / "tls.key")]
    assert lab.exec(node.name, [FLOWSCOPE, "status", *with_cert], check=False).returncode == 0
    refused = lab.exec(node.name, [FLOWSCOPE, "status", *agent_tls], check=False)
    assert refused.returncode != 0, refused.stdout

    # The metrics port of the manifest serves Prometheus' text, with the flows counted.
    metrics_port = agent.port("metrics")
    metrics = lab.exec(node.name, ["curl", "-sf", f"http://{node.ipv4}:{metrics_port}/metrics"], check=False)
    assert metrics.returncode == 0, metrics.stderr
    assert "hubble_flows_processed_total{" in metrics.stdout


def wait_for(
    lab: Lab,
    where: str,
    argv: list[str],
    done: Callable[[str], bool],
    again: Callable[[], None] | None = None,
    timeout_s: float = 60.0,
) -> str:
    """Run a command in `where` until its output satisfies `done` (doing `again` between tries)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = lab.exec(where, argv, check=False, timeout=60)
        if answer.returncode == 0 and done(answer.stdout):
            return answer.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{argv}: {answer.returncode} {answer.stdout[-2000:]} {answer.stderr[-2000:]}")
        if again is not None:
            again()
        time.sleep(0.5)
