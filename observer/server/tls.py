"""Server TLS from certificate files, for every gRPC server flowscope runs (the agent's, the relay's).

A server shows its certificate and key; given client CAs, it requires every client to present a certificate
one of them signed (mutual TLS). Files are read when the server starts, and a file that cannot be read is a
TLSConfigError naming it, not a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


class TLSConfigError(ValueError):
    """A certificate flag is missing its partner, or a file cannot be read."""


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTLS:
    """A server's own certificate; with client CAs, every client must present a certificate they signed."""

    cert: Path
    key: Path
    client_cas: tuple[Path, ...] = ()

    def credentials(self) -> grpc.ServerCredentials:
        roots = b"".join(read_file(p, "client CA file") for p in self.client_cas) or None
        return grpc.ssl_server_credentials(
            [(read_file(self.key, "server key"), read_file(self.cert, "server certificate"))],
            root_certificates=roots,
            require_client_auth=roots is not None,
        )


def server_tls(
    cert: Path | None,
    key: Path | None,
    client_cas: list[Path],
    disabled: bool = False,
    flags: tuple[str, str, str] = ("--tls-server-cert-file", "--tls-server-key-file", "--tls-client-ca-files"),
) -> ServerTLS | None:
    """The server TLS the flags ask for: none when disabled or when no certificate is given. `flags` names
    the certificate, key and client CA flags in the errors, as the command spells them."""
    cert_flag, key_flag, ca_flag = flags
    if disabled:
        return None
    if cert is None and key is None:
        if client_cas:
            raise TLSConfigError(f"{ca_flag} needs {cert_flag} and {key_flag}")
        return None
    if cert is None or key is None:
        raise TLSConfigError(f"{cert_flag} and {key_flag} go together")
    return ServerTLS(cert, key, tuple(client_cas))
