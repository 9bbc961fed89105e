"""The agent's TCP port is read-only: the write services (Control: policy, settings) are served on its unix socket,
or on a control listener the operator asks for with mutual TLS, never on :4244. A real agent in a one-node lab;
the CLI runs in the node's namespace, where the agent's TCP address is."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import Pair, authority, signed
from cli.cli_runner import flowscope_command, run_flowscope

from flowscope.lab import Lab
from flowscope.lab.topology import AGENT_PORT

pytestmark = pytest.mark.bpf

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs/examples/lab-policy.yaml"
CONTROL_PORT = 4250


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-ports") as lab:
        lab.up(traffic=False, agent=False)
        yield lab


@pytest.fixture(scope="module")
def certs(lab: Lab) -> Iterator[dict[str, Pair]]:
    folder = Path(tempfile.mkdtemp(prefix="fs-ports-"))
    ca = authority(folder, "ca")
    node_ip = lab.node("node1").ipv4
    yield {
        "ca": ca,
        "agent": signed(folder, ca, "agent", ["node1"], [node_ip]),
        "client": signed(folder, ca, "client", ["c"]),
    }
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def agent(lab: Lab) -> Iterator[Lab]:
    (daemon,) = lab.start_agents()
    yield lab
    lab.stop(daemon)


def in_node(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """`flowscope ARGS` run in node1's namespace."""
    return lab.exec("node1", [*flowscope_command(), *args], check=False)


def tcp_address(lab: Lab, port: int = AGENT_PORT) -> str:
    return f"{lab.node('node1').ipv4}:{port}"


def test_policy_apply_on_the_tcp_port_is_refused_and_says_where_control_lives(agent: Lab) -> None:
    refused = in_node(agent, "policy", "apply", str(POLICY), "--server", tcp_address(agent))
    assert refused.returncode != 0
    line = refused.stderr.strip()
    assert "\n" not in line and "read-only port" in line and str(agent.agent_socket("node1")) in line, line
    assert in_node(agent, "status", "--server", tcp_address(agent)).returncode == 0  # the Observer still answers


def test_policy_apply_over_the_unix_socket_works_and_the_socket_is_0660(agent: Lab) -> None:
    socket = agent.agent_socket("node1")
    assert stat.S_IMODE(socket.stat().st_mode) == 0o660
    applied = run_flowscope("policy", "apply", str(POLICY), "--server", f"unix://{socket}")
    assert applied.returncode == 0, applied.stderr
    deleted = run_flowscope("policy", "delete", "--server", f"unix://{socket}")
    assert deleted.returncode == 0, deleted.stderr


@pytest.mark.parametrize("with_tls", [False, True])
def test_a_control_listener_without_a_client_ca_refuses_to_start(
    with_tls: bool, certs: dict[str, Pair], tmp_path: Path
) -> None:
    tls = ["--tls-cert-file", str(certs["agent"].cert), "--tls-key-file", str(certs["agent"].key)] if with_tls else []
    done = run_flowscope("agent", "--socket", str(tmp_path / "a.sock"), "--control-listen-address", ":0", *tls)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "flowscope agent: --control-listen-address needs mutual TLS: "
        "give --tls-cert-file, --tls-key-file and --tls-client-ca-files"
    )


def test_under_mutual_tls_the_control_listener_serves_control_and_the_tcp_port_still_does_not(
    lab: Lab, certs: dict[str, Pair]
) -> None:
    tls = [
        *("--tls-cert-file", str(certs["agent"].cert), "--tls-key-file", str(certs["agent"].key)),
        *("--tls-client-ca-files", str(certs["ca"].cert)),
    ]
    (daemon,) = lab.start_agents(extra_args=[*tls, "--control-listen-address", f":{CONTROL_PORT}"])
    try:
        client = [
            *("--tls", "--tls-ca-cert-files", str(certs["ca"].cert)),
            *("--tls-client-cert-file", str(certs["client"].cert), "--tls-client-key-file", str(certs["client"].key)),
        ]
        control = tcp_address(lab, CONTROL_PORT)
        applied = in_node(lab, "policy", "apply", str(POLICY), "--server", control, *client)
        assert applied.returncode == 0, applied.stderr
        assert in_node(lab, "policy", "delete", "--server", control, *client).returncode == 0
        anonymous = in_node(
            lab, "policy", "delete", "--server", control, "--tls", "--tls-ca-cert-files", str(certs["ca"].cert)
        )
        assert anonymous.returncode != 0  # no client certificate: no handshake
        refused = in_node(lab, "policy", "apply", str(POLICY), "--server", tcp_address(lab), *client)
        assert (
            refused.returncode != 0 and "read-only port" in refused.stderr and f":{CONTROL_PORT}" in refused.stderr
        ), refused.stderr
    finally:
        lab.stop(daemon)
