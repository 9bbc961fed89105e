"""TLS from certificate files, one mechanism for every stage: the gRPC servers flowscope runs (the agent's, the
relay's) and its clients (the relay dialing agents, the CLI dialing a server).

A server shows its certificate and key; given client CAs, it requires every client to present a certificate
one of them signed (mutual TLS). A client trusts the CAs given (the system's when none), checks the server's
certificate against the name it expects, and may show a certificate of its own. Files are read when the
credentials are made, and a file that cannot be read is an UnreadableFile naming it, not a traceback.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

ALPN = ["h2"]  # gRPC runs on HTTP/2, and says so in the TLS handshake


class TLSConfigError(ValueError):
    """A certificate flag is missing its partner, or a file cannot be read."""


class UnreadableFile(TLSConfigError):
    """A certificate, key or CA file cannot be read: the flags make sense, the file does not open."""


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {path}: {exc.strerror or exc}") from None


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

    def ssl_context(self) -> ssl.SSLContext:
        """The same, for a server that does its own TLS (common/h2grpc): TLS 1.2 or later, HTTP/2 by ALPN, and
        with client CAs, no caller without a certificate one of them signed."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(ALPN)
        read_file(self.key, "server key")  # an unreadable file is named as credentials() names it
        read_file(self.cert, "server certificate")
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise UnreadableFile(f"cannot use server certificate {self.cert} and key {self.key}: {exc}") from None
        if self.client_cas:
            roots = b"".join(read_file(p, "client CA file") for p in self.client_cas)
            context.load_verify_locations(cadata=roots.decode("ascii", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def server_tls(
    cert: Path | None,
    key: Path | None,
    client_cas: Sequence[Path],
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


@dataclass(frozen=True)
class ClientTLS:
    """The CAs a client trusts (the system's when none) and the certificate it shows servers that ask for one.

    `described_as` names the CA, certificate and key files in errors, as the command's user knows them."""

    server_cas: tuple[Path, ...] = ()
    cert: Path | None = None
    key: Path | None = None
    described_as: tuple[str, str, str] = field(
        default=("server CA file", "client certificate", "client key"), compare=False
    )

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TLSConfigError("--tls-client-cert-file and --tls-client-key-file go together")

    def credentials(self, trust: bytes | None = None) -> grpc.ChannelCredentials:
        """Credentials trusting the CA files, or only the PEM certificates in `trust` when it is given."""
        ca_what, cert_what, key_what = self.described_as
        cas = b"".join(read_file(p, ca_what) for p in self.server_cas)  # read even when unused: a bad file is named
        roots = trust or cas or None
        key = read_file(self.key, key_what) if self.key else None
        chain = read_file(self.cert, cert_what) if self.cert else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)

    def channel(
        self,
        target: str,
        server_name: str | None = None,
        options: Sequence[tuple[str, Any]] = (),
        trust: bytes | None = None,
    ) -> grpc.Channel:
        """A TLS channel to `target` whose certificate must name `server_name` (the target's host when none:
        an agent's certificate names its node, not the address it is dialed at)."""
        channel_options = [*options]
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        return grpc.secure_channel(target, self.credentials(trust), options=channel_options)
