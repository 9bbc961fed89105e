"""Connecting: the fallback to the local agent's socket, TLS and mutual TLS, and how main loads commands."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import cli_samples as samples
import grpc
import pytest
from certificates import Pair, self_signed
from cli_fake_server import FakeServer
from cli_runner import run_flowscope

import flowscope.cli
import flowscope.cli.connection
import flowscope.cli.observe
from flowscope.cli.main import build_parser, commands, main
from flowscope.cli.observe.request import build_request


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_default_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the default server at a port where nothing listens, whatever runs on this machine."""
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setattr(flowscope.cli.connection, "DEFAULT_SERVER", address)
    monkeypatch.delenv("FLOWSCOPE_SERVER", raising=False)
    return address


def test_falls_back_to_the_agent_socket(
    short_tmp: Path,
    no_default_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    agent_socket = short_tmp / "agent.sock"
    monkeypatch.setenv("FLOWSCOPE_DEFAULT_SOCKET_PATH", str(agent_socket))
    with FakeServer(agent_socket, flows=[samples.response(samples.tcp_flow())]):
        assert main(["observe", "--color", "never"]) == 0
    assert "default/client:34567" in capsys.readouterr().out


def test_without_either_the_error_names_both(
    short_tmp: Path,
    no_default_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLOWSCOPE_DEFAULT_SOCKET_PATH", str(short_tmp / "none.sock"))
    assert main(["observe"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"flowscope: error: cannot connect to {no_default_server} (connection refused); "
        f"also tried unix://{short_tmp}/none.sock (no such socket)\n"
    )


def test_a_chosen_server_has_no_fallback(
    short_tmp: Path,
    no_default_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    agent_socket = short_tmp / "agent.sock"
    monkeypatch.setenv("FLOWSCOPE_DEFAULT_SOCKET_PATH", str(agent_socket))
    monkeypatch.setenv("FLOWSCOPE_SERVER", no_default_server)
    with FakeServer(agent_socket):
        assert main(["status"]) == 1
    assert capsys.readouterr().err == f"flowscope: error: cannot connect to {no_default_server} (connection refused)\n"


def test_server_flag_forms() -> None:
    assert flowscope.cli.connection.grpc_target("tls://relay:4245") == "relay:4245"
    assert flowscope.cli.connection.grpc_target("/run/flowscope/hubble.sock") == "unix:///run/flowscope/hubble.sock"
    assert flowscope.cli.connection.grpc_target("unix:///x.sock") == "unix:///x.sock"


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def certificates(short_tmp: Path) -> dict[str, Pair]:
    return {
        name: self_signed(short_tmp, name, names=(f"DNS:{name}", "IP:127.0.0.1"))
        for name in ("server.test", "client.test")
    }


def tls_server(certificates: dict[str, Pair], mutual: bool = False) -> FakeServer:
    cert, key = certificates["server.test"]
    client_ca = certificates["client.test"].cert.read_bytes() if mutual else None
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=client_ca, require_client_auth=mutual
    )
    return FakeServer("127.0.0.1:0", credentials=credentials)


def test_tls_with_a_ca(certificates: dict[str, Pair], capsys: pytest.CaptureFixture[str]) -> None:
    ca = str(certificates["server.test"].cert)
    with tls_server(certificates) as server:
        assert main(["status", "--server", f"tls://{server.target}", "--tls-ca-cert-files", ca]) == 0
        assert "Healthcheck" in capsys.readouterr().out
        # The certificate names server.test, not this address: --tls-server-name says whom to expect.
        argv = ["status", "--server", server.target, "--tls", "--tls-ca-cert-files", ca]
        assert main([*argv, "--tls-server-name", "server.test"]) == 0


def test_tls_refuses_an_unknown_certificate(certificates: dict[str, Pair], capsys: pytest.CaptureFixture[str]) -> None:
    with tls_server(certificates) as server:
        assert main(["status", "--server", f"tls://{server.target}", "--timeout", "2s"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"flowscope: error: cannot connect to {server.target} (") and err.count("\n") == 1


def test_tls_failure_is_one_line_from_the_real_command(certificates: dict[str, Pair], cli_env: dict[str, str]) -> None:
    with tls_server(certificates) as server:
        result = run_flowscope("status", "--server", f"tls://{server.target}", "--timeout", "2s", env=cli_env)
        plain = run_flowscope("status", "--server", server.target, "--timeout", "2s", env=cli_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and "a TLS server? try tls:// or --tls" in plain.stderr


def test_tls_allow_insecure(certificates: dict[str, Pair], capsys: pytest.CaptureFixture[str]) -> None:
    with tls_server(certificates) as server:
        assert main(["status", "--server", f"tls://{server.target}", "--tls-allow-insecure"]) == 0


def test_mutual_tls(certificates: dict[str, Pair], capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = certificates["client.test"]
    ca = str(certificates["server.test"].cert)
    with tls_server(certificates, mutual=True) as server:
        base = ["status", "--server", f"tls://{server.target}", "--tls-ca-cert-files", ca, "--timeout", "2s"]
        assert main([*base, "--tls-client-cert-file", str(cert), "--tls-client-key-file", str(key)]) == 0
        capsys.readouterr()
        assert main(base) == 1
        assert capsys.readouterr().err.count("\n") == 1
        assert main([*base, "--tls-client-cert-file", str(cert)]) == 2


def test_observe_reads_flows_over_tls_and_mutual_tls(
    certificates: dict[str, Pair], capsys: pytest.CaptureFixture[str]
) -> None:
    """observe reads its stream through common/h2grpc, not grpcio: the same TLS flags, the same one-line refusals."""
    cert, key = certificates["client.test"]
    ca = str(certificates["server.test"].cert)
    flows = [samples.response(samples.tcp_flow())]
    with tls_server(certificates, mutual=True) as server:
        server.observer.flows = flows
        base = ["observe", "--server", f"tls://{server.target}", "--tls-ca-cert-files", ca, "--timeout", "2s"]
        assert main([*base, "--tls-client-cert-file", str(cert), "--tls-client-key-file", str(key)]) == 0
        assert "default/client:34567" in capsys.readouterr().out
        assert main(base) == 1  # no client certificate
        err = capsys.readouterr().err
        assert err.startswith("flowscope: error: ") and err.count("\n") == 1
    with tls_server(certificates) as server:
        server.observer.flows = flows
        assert main(["observe", "--server", f"tls://{server.target}", "--tls-allow-insecure"]) == 0
        assert "default/client:34567" in capsys.readouterr().out
        assert main(["observe", "--server", f"tls://{server.target}", "--timeout", "2s"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"flowscope: error: cannot connect to {server.target} (") and err.count("\n") == 1
        assert "CERTIFICATE_VERIFY_FAILED" in err
        assert main(["observe", "--server", server.target, "--timeout", "2s"]) == 1
        assert "a TLS server? try tls:// or --tls" in capsys.readouterr().err


# --- loading the commands -------------------------------------------------------------------------


COMMANDS = (
    "observe",
    "trace",
    "status",
    "list",
    "agent",
    "lab",
    "relay",
    "demo",
    "policy",
    "config",
    "bpf",
    "ct",
    "top",
    "map",
)


def test_every_command_is_registered() -> None:
    listed = [line.split()[0] for line in build_parser().format_help().splitlines() if line.startswith("    ")]
    assert listed == list(COMMANDS)


def test_a_command_that_fails_to_import_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """No command quietly goes missing: the import error itself reaches the person who runs it, or asks for the
    list of commands; the other commands, which no longer import it, still run."""
    monkeypatch.delattr(flowscope.cli, "policy", raising=False)
    monkeypatch.setitem(sys.modules, "flowscope.cli.policy", None)  # what `import` finds for a module it cannot load
    for argv in (["policy", "show"], ["--help"], ["polcy"]):
        with pytest.raises(ImportError, match=r"flowscope\.cli\.policy"):
            main(argv)
    with pytest.raises(SystemExit) as exited:
        main(["observe", "--help"])
    assert exited.value.code == 0


def test_a_command_alone_parses_as_among_all(capsys: pytest.CaptureFixture[str]) -> None:
    """`flowscope X` builds X's parser alone (start-up); its help and its parsing are those of the whole parser."""
    whole = build_parser()
    (subparsers,) = (action for action in whole._actions if isinstance(action, argparse._SubParsersAction))
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert capsys.readouterr().out == subparsers.choices[name].format_help()
    argv = ["observe", "--last", "5", "--from-pod", "default/client", "-o", "json"]
    alone, among_all = build_parser(commands(argv)).parse_args(argv), whole.parse_args(argv)
    assert build_request(alone) == build_request(among_all) and alone.output == among_all.output == "json"
    assert alone.run is among_all.run is flowscope.cli.observe.run
