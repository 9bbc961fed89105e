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


class TLSConfigError(ValueError):
    """A certificate flag is missing its partner, or a file cannot be read."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTLS:
    """The relay's own certificate; with client CAs, every client must present a certificate they signed."""

    cert: Path
    key: Path
    client_cas: tuple[Path, ...] = ()

    def credentials(self) -> grpc.ServerCredentials:
        roots = b"".join(_read(p, "client CA file") for p in self.client_cas) or None
        return grpc.ssl_server_credentials(
            [(_read(self.key, "server key"), _read(self.cert, "server certificate"))],
            root_certificates=roots,
            require_client_auth=roots is not None,
        )


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
        roots = b"".join(_read(p, "agent CA file") for p in self.server_cas) or None
        key = _read(self.key, "client key") if self.key else None
        chain = _read(self.cert, "client certificate") if self.cert else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def server_tls(cert: Path | None, key: Path | None, client_cas: list[Path], disabled: bool) -> ServerTLS | None:
    """The server TLS the flags ask for: none when disabled or when no certificate is given."""
    if disabled:
        return None
    if cert is None and key is None:
        if client_cas:
            raise TLSConfigError("--tls-client-ca-files needs --tls-server-cert-file and --tls-server-key-file")
        return None
    if cert is None or key is None:
        raise TLSConfigError("--tls-server-cert-file and --tls-server-key-file go together")
    return ServerTLS(cert, key, tuple(client_cas))


def client_tls(server_cas: list[Path], cert: Path | None, key: Path | None, disabled: bool) -> ClientTLS | None:
    """The relay-to-agent TLS the flags ask for: none when disabled or when no TLS flag is given."""
    if disabled or not (server_cas or cert or key):
        return None
    return ClientTLS(tuple(server_cas), cert, key)
