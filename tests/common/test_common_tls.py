"""TLS from certificate files, the one mechanism of the agent, the relay and the CLI: real certificates made
with openssl, real gRPC servers and channels on the loopback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from certificates import Pair
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.common.tls import ClientTLS, ServerTLS, TLSConfigError, UnreadableFile, server_tls


@pytest.fixture
def mutual_server(server_pair: Pair, client_pair: Pair) -> Iterator[str]:
    """A health server on the loopback that requires client.test's certificate; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", ServerTLS(*server_pair, client_cas=(client_pair.cert,)).credentials())
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def healthy(channel: grpc.Channel) -> bool:
    with channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def test_server_and_client_tls_meet_with_mutual_tls(mutual_server: str, server_pair: Pair, client_pair: Pair) -> None:
    """The certificate names server.test, not the address dialed: the name given is the one checked."""
    client = ClientTLS(server_cas=(server_pair.cert,), cert=client_pair.cert, key=client_pair.key)
    assert healthy(client.channel(mutual_server, "server.test"))
    with pytest.raises(grpc.RpcError):
        healthy(client.channel(mutual_server, "other.test"))
    with pytest.raises(grpc.RpcError):
        healthy(ClientTLS(server_cas=(server_pair.cert,)).channel(mutual_server, "server.test"))  # no certificate


def test_trusting_a_given_certificate_instead_of_the_ca_files(
    mutual_server: str, server_pair: Pair, client_pair: Pair
) -> None:
    client = ClientTLS(server_cas=(client_pair.cert,), cert=client_pair.cert, key=client_pair.key)
    with pytest.raises(grpc.RpcError):
        healthy(client.channel(mutual_server, "server.test"))  # the CA file given did not sign the server
    assert healthy(client.channel(mutual_server, "server.test", trust=server_pair.cert.read_bytes()))


def test_the_agent_takes_its_tls_flags_as_the_relay_does(tmp_path: Path) -> None:
    """One server-TLS mechanism for both servers; the agent's errors name the agent's own flags, and a file
    that cannot be read is named instead of a traceback."""
    agent_flags = ("--tls-cert-file", "--tls-key-file", "--tls-client-ca-files")
    with pytest.raises(TLSConfigError, match="--tls-client-ca-files needs --tls-cert-file and --tls-key-file"):
        server_tls(None, None, [tmp_path / "ca.pem"], flags=agent_flags)
    with pytest.raises(TLSConfigError, match="--tls-cert-file and --tls-key-file go together"):
        server_tls(tmp_path / "cert.pem", None, [], flags=agent_flags)
    assert server_tls(None, None, [], flags=agent_flags) is None
    missing = server_tls(tmp_path / "cert.pem", tmp_path / "key.pem", [], flags=agent_flags)
    assert missing is not None
    with pytest.raises(TLSConfigError, match="cannot read server key"):
        missing.credentials()


def test_a_client_certificate_needs_its_key_and_unreadable_files_are_named(tmp_path: Path) -> None:
    """Two kinds of error: flags that do not go together (the command's usage), a file that does not open."""
    with pytest.raises(TLSConfigError, match="--tls-client-cert-file and --tls-client-key-file go together") as half:
        ClientTLS(cert=tmp_path / "client.pem")
    assert not isinstance(half.value, UnreadableFile)
    named = ClientTLS((tmp_path / "ca.pem",), described_as=("--tls-ca-cert-files", "cert", "key"))
    with pytest.raises(UnreadableFile, match=f"cannot read --tls-ca-cert-files {tmp_path}/ca.pem: No such file"):
        named.credentials()
