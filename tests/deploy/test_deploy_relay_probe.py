"""The relay's probes in deploy/kubernetes/relay.yaml: a relay started with the manifest's own arguments, as the
pod's security context runs it (its user and groups, no capability; its certificate files made here, readable
through the pod's fsGroup only; its port one that is free here), answers the gRPC health check that Kubernetes'
gRPC probe makes, as the kubelet makes it: plaintext, grpc.health.v1 Check for the probe's service name."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from deploy_manifests import Container, container, parse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import stopped

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> None:
    """tls.crt, tls.key and ca.crt as the Secret holds them (here one self-signed certificate is all three)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt"), "-subj", "/CN=flowscope-relay",
         "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (folder / "ca.crt").write_bytes((folder / "tls.crt").read_bytes())


def as_the_pod_runs(c: Container) -> list[str]:
    """A command prefix with the pod's user, group and fsGroup, no capability and no new privileges."""
    pod = c.pod["securityContext"]
    security = c.spec["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]} and security["allowPrivilegeEscalation"] is False
    return [
        "setpriv", f"--reuid={pod['runAsUser']}", f"--regid={pod['runAsGroup']}", f"--groups={pod['fsGroup']}",
        "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--",
    ]  # fmt: skip


@pytest.fixture
def relay() -> Iterator[tuple[int, dict, Path]]:
    """The manifest's relay, as its pod runs it (user, groups, no capability), its Secret's files in a folder of
    their own with the Secret's mode and the pod's fsGroup (as the kubelet mounts them) and its port a free one;
    stopped and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to run the relay as the pod's user)")
    c = container("flowscope-relay", "relay")
    (mount,) = [m for m in c.spec["volumeMounts"] if m["name"] == "tls"]
    (volume,) = [v for v in c.pod["volumes"] if v["name"] == "tls"]
    group = c.pod["securityContext"]["fsGroup"]
    folder = Path(tempfile.mkdtemp(prefix="flowscope-relay-"))
    process = None
    try:
        self_signed(folder)
        for path in folder.iterdir():
            os.chown(path, 0, group)
            os.chmod(path, volume["secret"]["defaultMode"])
        os.chown(folder, 0, group)
        os.chmod(folder, 0o750)
        port = free_port()
        argv = [arg.replace(mount["mountPath"], str(folder)) for arg in c.argv()]
        listen = parse(c.argv()).listen_address
        argv[argv.index(f"--listen-address={listen}")] = f"--listen-address=127.0.0.1:{port}"
        with (folder / "relay.log").open("w") as log:
            process = subprocess.Popen([*as_the_pod_runs(c), FLOWSCOPE, *argv], stdout=log, stderr=log, cwd="/")
        yield port, c.spec, folder / "relay.log"
    finally:
        if process is not None:
            stopped(process)
        shutil.rmtree(folder)


def kubelet_check(port: int, service: str) -> int | None:
    """What the kubelet's gRPC probe sees: the serving status, or None when the call fails."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError:
            return None
    return int(reply.status)


def test_the_relay_answers_the_kubelets_grpc_probe_as_serving(relay: tuple[int, dict, Path]) -> None:
    port, spec, log = relay
    for kind in ("readinessProbe", "livenessProbe"):
        service = spec[kind]["grpc"]["service"]
        deadline = time.monotonic() + 60  # a relay starts in well under a second; the bound is for a busy machine
        status = kubelet_check(port, service)
        while status != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.1)
            status = kubelet_check(port, service)
        assert status == health_pb2.HealthCheckResponse.SERVING, (kind, service, status, log.read_text()[-2000:])
