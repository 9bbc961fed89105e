"""What TLS is to the command line alone: --tls-allow-insecure, which gRPC's Python API cannot do by itself.

gRPC always verifies the server's certificate, so to skip that the CLI first meets the server with Python's
own TLS (verifying nothing), then trusts exactly the certificate it was shown, under a name that certificate
gives. The rest of the client's TLS (CA files, server name, mutual TLS) is common/tls.py's, as the relay's is.
"""

from __future__ import annotations

import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from flowscope.cli.errors import CliError
from flowscope.common.tls import ClientTLS


def presented_certificate(address: tuple[str, int], tls: ClientTLS, timeout: float) -> tuple[bytes, str | None]:
    """The certificate the server at `address` presents, as PEM, and the name it gives. This checks nothing
    about who the server is, which is what --tls-allow-insecure asks for."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    host, port = address
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with (
            socket.create_connection(address, timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as connection,
        ):
            der = connection.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot connect to {where} (TLS: {exc})") from None
    if der is None:
        raise CliError(f"cannot connect to {where} (TLS: the server showed no certificate)")
    certificate = x509.load_der_x509_certificate(der)
    return certificate.public_bytes(Encoding.PEM), certificate_name(certificate)


def certificate_name(certificate: x509.Certificate) -> str | None:
    """The name a certificate is for: its first DNS name or IP address, else its common name (the name gRPC
    is then told to expect, since the address dialed may be none of them)."""
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alternatives = x509.SubjectAlternativeName([])
    for name in alternatives:
        if isinstance(name, x509.DNSName | x509.IPAddress):
            return str(name.value)
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        return str(attribute.value)
    return None
