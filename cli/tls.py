"""TLS for the client side of --server: CA files, the server name to expect, mutual TLS, and
--tls-allow-insecure (which gRPC's Python API cannot do by itself, see `_presented_certificate`)."""

from __future__ import annotations

import socket
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from flowscope.cli.connection import host_port
from flowscope.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from flowscope.cli.connection import ServerOptions


def secure_channel(target: str, options: ServerOptions) -> grpc.Channel:
    """A TLS channel: the CAs given (or the system's), a server name to expect, a client certificate."""
    channel_options: list[tuple[str, Any]] = []
    root = b"".join(_read(path, "--tls-ca-cert-files") for path in options.ca_files) or None
    server_name = options.server_name
    if options.allow_insecure:
        presented, name = _presented_certificate(target, options)
        root, server_name = presented, server_name or name
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    if bool(options.client_cert) != bool(options.client_key):
        raise UsageError("--tls-client-cert-file and --tls-client-key-file go together")
    key = _read(options.client_key, "--tls-client-key-file") if options.client_key else None
    chain = _read(options.client_cert, "--tls-client-cert-file") if options.client_cert else None
    credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(target, credentials, options=channel_options)


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None


def _presented_certificate(target: str, options: ServerOptions) -> tuple[bytes, str | None]:
    """--tls-allow-insecure: gRPC cannot skip verification, so trust the certificate the server presents
    (and a name in it). This checks nothing about who the server is, which is what the flag asks for."""
    address = host_port(target)
    if address is None:
        raise UsageError(f"--tls-allow-insecure needs a host:port server, not {target}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if options.client_cert and options.client_key:
        context.load_cert_chain(options.client_cert, options.client_key)
    try:
        with (
            socket.create_connection(address, timeout=options.timeout) as raw,
            context.wrap_socket(raw, server_hostname=address[0]) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot connect to {target} (TLS: {exc})") from None
    if der is None:
        raise CliError(f"cannot connect to {target} (TLS: the server showed no certificate)")
    pem = ssl.DER_cert_to_PEM_cert(der)
    return pem.encode(), _certificate_name(pem)


def _certificate_name(pem: str) -> str | None:
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as file:
        file.write(pem)
        file.flush()
        decoded: dict[str, Any] = getattr(ssl, "_ssl")._test_decode_cert(file.name)  # noqa: B009
    for kind, value in decoded.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address"):
            return str(value)
    for rdn in decoded.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
