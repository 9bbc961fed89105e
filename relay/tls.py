"""TLS on the relay's two legs, from certificate files, as Hubble's relay takes them.

Clients to relay (`--tls-server-cert-file`, `--tls-server-key-file`, and `--tls-client-ca-files` to require
client certificates: mutual TLS). Relay to agents (`--tls-hubble-server-ca-files` to verify them,
`--tls-client-cert-file`/`--tls-client-key-file` to present a certificate to agents that require one); each
agent's certificate is checked against the server name its peer notification gives
(`<node>.<cluster>.hubble-grpc.cilium.io` in Hubble), or its address when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from flowscope.observer.server.tls import ServerTLS, TLSConfigError, read_file, server_tls

__all__ = ["ClientTLS", "ServerTLS", "TLSConfigError", "client_tls", "server_tls"]


@dataclass(frozen=True)
class ClientTLS:
    """How the relay checks agents (CAs; the system's when none) and the certificate it shows them."""

    server_cas: tuple[Path, ...] = ()
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TLSConfigError("--tls-client-cert-file and --tls-client-key-file go together")

    def credentials(self) -> grpc.ChannelCredentials:
        roots = b"".join(read_file(p, "agent CA file") for p in self.server_cas) or None
        key = read_file(self.key, "client key") if self.key else None
        chain = read_file(self.cert, "client certificate") if self.cert else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def client_tls(server_cas: list[Path], cert: Path | None, key: Path | None, disabled: bool) -> ClientTLS | None:
    """The relay-to-agent TLS the flags ask for: none when disabled or when no TLS flag is given."""
    if disabled or not (server_cas or cert or key):
        return None
    return ClientTLS(tuple(server_cas), cert, key)
