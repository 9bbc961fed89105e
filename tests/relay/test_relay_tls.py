"""TLS on both legs: clients to the relay (mutual TLS refuses a client without a certificate), and the relay
to agents (checked against the server name a peer notification gives)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from certificates import Pair, authority, signed
from relay_fakes import FakeAgent
from relay_samples import MS, flow

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.errors import CliError
from flowscope.cli.main import build_parser
from flowscope.common.tls import ClientTLS, ServerTLS
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayServer

Start = Callable[..., RelayServer]
NODE1 = "node1.lab.hubble-grpc.cilium.io"


@pytest.fixture
def pki(short_tmp: Path) -> dict[str, Pair]:
    ca = authority(short_tmp, "ca")
    return {
        "ca": ca,
        "relay": signed(short_tmp, ca, "relay", ["localhost"], ["127.0.0.1"]),
        "client": signed(short_tmp, ca, "client", ["client.flowscope"]),
        "node1": signed(short_tmp, ca, "node1", [NODE1]),
        "other-ca": authority(short_tmp, "other-ca"),
    }


def secure(port: int, ca: Pair, client: Pair | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def server_status(channel: grpc.Channel) -> observer_pb2.ServerStatusResponse:
    return observer_pb2_grpc.ObserverStub(channel).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)


def test_under_mutual_tls_a_client_without_a_certificate_is_refused(
    short_tmp: Path, start_relay: Start, pki: dict[str, Pair]
) -> None:
    agent = FakeAgent("node1", short_tmp / "node1.sock").start()
    tls = ServerTLS(pki["relay"].cert, pki["relay"].key, client_cas=(pki["ca"].cert,))
    relay = start_relay(peers=[Peer("node1", agent.target)], server_tls=tls)
    with pytest.raises(grpc.RpcError) as refused, secure(relay.port, pki["ca"]) as anonymous:
        server_status(anonymous)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with secure(relay.port, pki["ca"], pki["other-ca"]) as stranger, pytest.raises(grpc.RpcError):
        server_status(stranger)  # a certificate, but from a CA the relay does not trust
    with grpc.insecure_channel(f"localhost:{relay.port}") as plaintext, pytest.raises(grpc.RpcError):
        server_status(plaintext)
    with secure(relay.port, pki["ca"], pki["client"]) as known:
        assert server_status(known).num_connected_nodes.value == 1
    agent.stop()


def test_the_relay_checks_agents_against_their_tls_server_name_and_shows_its_own_certificate(
    start_relay: Start, pki: dict[str, Pair]
) -> None:
    node_tls = grpc.ssl_server_credentials(
        [(pki["node1"].key.read_bytes(), pki["node1"].cert.read_bytes())],
        root_certificates=pki["ca"].cert.read_bytes(),
        require_client_auth=True,
    )
    agent = FakeAgent("node1", "localhost:0", credentials=node_tls).start()
    agent.history = [flow("node1", 1_700_000_000_000 * 1_000_000 + MS, port=7)]
    client = ClientTLS(server_cas=(pki["ca"].cert,), cert=pki["client"].cert, key=pki["client"].key)
    relay = start_relay(peers=[Peer("node1", agent.target, server_name=NODE1)], client_tls=client)
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"localhost:{relay.port}"))
    flows = [r for r in stub.GetFlows(observer_pb2.GetFlowsRequest(), timeout=10) if r.HasField("flow")]
    assert [r.flow.l4.TCP.destination_port for r in flows] == [7]
    (node,) = stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes
    assert node.tls.enabled and node.tls.server_name == NODE1

    wrong_name = start_relay(peers=[Peer("node1", agent.target, server_name="node2.lab")], client_tls=client)
    anonymous = start_relay(
        peers=[Peer("node1", agent.target, server_name=NODE1)], client_tls=ClientTLS((pki["ca"].cert,))
    )
    for relay in (wrong_name, anonymous):
        stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"localhost:{relay.port}"))
        status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
        assert (status.num_connected_nodes.value, list(status.unavailable_nodes)) == (0, ["node1"])
    agent.stop()


def relay_args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["relay", *flags])


def test_tls_flags_must_come_in_pairs_and_turn_tls_on_as_hubbles_do(pki: dict[str, Pair]) -> None:
    from flowscope.cli.relay import config_from

    with pytest.raises(CliError, match="go together"):
        config_from(relay_args("--tls-server-cert-file", str(pki["relay"].cert)))
    with pytest.raises(CliError, match="go together"):
        config_from(relay_args("--tls-client-cert-file", str(pki["client"].cert)))
    plain = config_from(relay_args())
    assert plain.server_tls is None and plain.client_tls is None
    assert plain.listen_address == "localhost:4245" and plain.peer_service == "unix:///run/flowscope/hubble.sock"
    full = config_from(
        relay_args(
            "--tls-server-cert-file",
            str(pki["relay"].cert),
            "--tls-server-key-file",
            str(pki["relay"].key),
            "--tls-client-ca-files",
            str(pki["ca"].cert),
            "--tls-hubble-server-ca-files",
            str(pki["ca"].cert),
            "--peers",
            "node1=10.77.0.1:4244",
        )
    )
    assert full.server_tls is not None and full.server_tls.client_cas == (pki["ca"].cert,)
    assert full.client_tls is not None and full.peer_service is None and full.peers == [Peer("node1", "10.77.0.1:4244")]
    disabled = config_from(
        relay_args(
            "--tls-server-cert-file",
            str(pki["relay"].cert),
            "--tls-server-key-file",
            str(pki["relay"].key),
            "--disable-server-tls",
            "--tls-hubble-server-ca-files",
            str(pki["ca"].cert),
            "--disable-client-tls",
        )
    )
    assert disabled.server_tls is None and disabled.client_tls is None
