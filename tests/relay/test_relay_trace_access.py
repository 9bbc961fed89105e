"""Who may start packet-path sessions through the relay: only callers it can trust (its unix socket, a listener
demanding client certificates), and only when it can reach the agents' write side. Real relays, real gRPC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from certificates import Pair, authority, signed

from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.common.tls import ClientTLS, ServerTLS
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayServer
from flowscope.relay.trace import check_peer_control

# An agent's read-only address: the relay never asks it for a session (nothing needs to listen there).
PEERS = [Peer("node1", "127.0.0.1:9"), Peer("node2", "127.0.0.1:9")]


def refusal(channel: grpc.Channel) -> grpc.RpcError:
    call = trace_pb2_grpc.TracerStub(channel).Trace(trace_pb2.TraceRequest(), timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        next(call)
    return refused.value


def test_a_plain_port_refuses_sessions_saying_where_they_are_served(
    start_relay: Callable[..., RelayServer], short_tmp: Path
) -> None:
    socket = short_tmp / "relay.sock"
    relay = start_relay(peers=PEERS, socket_path=socket)
    with grpc.insecure_channel(f"localhost:{relay.port}") as channel:
        error = refusal(channel)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "flowscope.trace.Tracer is not served on this read-only port; it is served on "
        f"the relay's socket {socket} or a mutual-TLS listen address"
    )


def test_server_only_tls_is_read_only_too(start_relay: Callable[..., RelayServer], short_tmp: Path) -> None:
    ca = authority(short_tmp)
    server = signed(short_tmp, ca, "relay", ["localhost"], ["127.0.0.1"])
    relay = start_relay(peers=PEERS, server_tls=ServerTLS(server.cert, server.key))
    credentials = grpc.ssl_channel_credentials(ca.cert.read_bytes())
    with grpc.secure_channel(f"localhost:{relay.port}", credentials) as channel:
        error = refusal(channel)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only port" in str(error.details())


def test_the_socket_serves_sessions_and_without_a_control_port_says_which_flag_is_missing(
    start_relay: Callable[..., RelayServer], short_tmp: Path
) -> None:
    socket = short_tmp / "relay.sock"
    start_relay(peers=PEERS, socket_path=socket)
    assert socket.stat().st_mode & 0o777 == 0o660
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        error = refusal(channel)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        "the relay cannot reach the agents' write side for sessions: give it --peer-control-port PORT "
        "(the agents' --control-listen-address port, mutual TLS)"
    )


def test_mutual_tls_serves_sessions(start_relay: Callable[..., RelayServer], short_tmp: Path) -> None:
    ca = authority(short_tmp)
    server, client = signed(short_tmp, ca, "relay", ["localhost"]), signed(short_tmp, ca, "client", ["client"])
    relay = start_relay(peers=PEERS, server_tls=ServerTLS(server.cert, server.key, client_cas=(ca.cert,)))
    with grpc.secure_channel(f"localhost:{relay.port}", credentials(ca, client)) as channel:
        error = refusal(channel)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # past the door: it only lacks the agents' side


def test_the_socket_goes_with_the_relay(short_tmp: Path) -> None:
    from flowscope.relay.server import RelayConfig

    socket = short_tmp / "relay.sock"
    with RelayServer(RelayConfig(listen_address="localhost:0", peers=PEERS, socket_path=socket)):
        assert socket.exists()
        with pytest.raises(OSError, match="another server listens on"):
            RelayServer(RelayConfig(listen_address="localhost:0", peers=PEERS, socket_path=socket))
    assert not socket.exists()


def test_a_control_port_needs_the_relays_client_certificate(short_tmp: Path) -> None:
    with pytest.raises(ValueError, match="--peer-control-port needs --tls-client-cert-file"):
        check_peer_control(4246, ClientTLS((short_tmp / "ca.pem",)))
    check_peer_control(None, None)
    check_peer_control(4246, ClientTLS((), short_tmp / "c.pem", short_tmp / "c.key"))


def credentials(ca: Pair, client: Pair) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(ca.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes())
