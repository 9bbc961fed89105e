"""The relay's probes in deploy/kubernetes/relay.yaml: a relay started with the manifest's own arguments (its
certificate files made here, its port one that is free here) answers the gRPC health check that Kubernetes'
gRPC probe makes, as the kubelet makes it: plaintext, grpc.health.v1 Check for the probe's service name."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from deploy_manifests import container, parse
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, dict]]:
    """The manifest's relay, its Secret's files under tmp_path and its port a free one; stopped afterwards."""
    c = container("flowscope-relay", "relay")
    (mount,) = [m for m in c.spec["volumeMounts"] if m["name"] == "tls"]
    self_signed(tmp_path)
    port = free_port()
    argv = [arg.replace(mount["mountPath"], str(tmp_path)) for arg in c.argv()]
    listen = parse(c.argv()).listen_address
    argv[argv.index(f"--listen-address={listen}")] = f"--listen-address=127.0.0.1:{port}"
    process = subprocess.Popen([FLOWSCOPE, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield port, c.spec
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def kubelet_check(port: int, service: str) -> int | None:
    """What the kubelet's gRPC probe sees: the serving status, or None when the call fails."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError:
            return None
    return int(reply.status)


def test_the_relay_answers_the_kubelets_grpc_probe_as_serving(relay: tuple[int, dict]) -> None:
    port, spec = relay
    for kind in ("readinessProbe", "livenessProbe"):
        service = spec[kind]["grpc"]["service"]
        deadline = time.monotonic() + 60  # a relay starts in well under a second; the bound is for a busy machine
        status = kubelet_check(port, service)
        while status != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.1)
            status = kubelet_check(port, service)
        assert status == health_pb2.HealthCheckResponse.SERVING, (kind, service, status)
