"""--tls-allow-insecure's own part: the certificate a server presents, read with `cryptography`, and the name
the CLI then expects in it. Certificates are real, made with openssl; the server is a real TLS listener."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from certificates import self_signed
from cryptography import x509

from flowscope.cli.errors import CliError
from flowscope.cli.tls import certificate_name, presented_certificate
from flowscope.common.tls import ClientTLS


@pytest.mark.parametrize(
    ("subject", "alternatives", "name"),
    [
        ("/CN=common.test", "DNS:first.test,DNS:second.test,IP:127.0.0.1", "first.test"),
        ("/CN=common.test", "email:a@b.test,IP:127.0.0.1,DNS:later.test", "127.0.0.1"),
        ("/O=flowscope/CN=common.test", None, "common.test"),
        ("/O=flowscope", None, None),
    ],
)
def test_the_name_a_certificate_is_for(tmp_path: Path, subject: str, alternatives: str | None, name: str) -> None:
    """Its first DNS name or address, else its common name; nothing when it names nothing."""
    cert, _ = self_signed(tmp_path, "cert", subject, alternatives.split(",") if alternatives else ())
    assert certificate_name(x509.load_pem_x509_certificate(cert.read_bytes())) == name


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[tuple[tuple[str, int], Path]]:
    """A TLS listener on the loopback that completes one handshake per connection; yields where, and its
    certificate (which names server.test, not the address)."""
    cert, key = self_signed(tmp_path, "server.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[:2], cert
    listener.close()


def test_the_presented_certificate_is_trusted_as_shown(tls_listener: tuple[tuple[str, int], Path]) -> None:
    address, cert = tls_listener
    pem, name = presented_certificate(address, ClientTLS(), timeout=5)
    assert x509.load_pem_x509_certificate(pem) == x509.load_pem_x509_certificate(cert.read_bytes())
    assert name == "server.test"


def test_a_server_that_does_not_answer_is_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = closed.getsockname()[:2]
    with pytest.raises(CliError, match=rf"^cannot connect to 127\.0\.0\.1:{address[1]} \(TLS: "):
        presented_certificate(address, ClientTLS(), timeout=2)
