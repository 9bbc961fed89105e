"""A server connection's bytes and who sent them: plain, or TLS done in memory.

TLS runs on an ssl.SSLObject over memory buffers rather than an SSLSocket: a connection reads in one thread and
writes in another, and OpenSSL's state must not be used by two threads at once. With the TLS state in memory,
both sides touch it only under the connection's lock, and the socket itself carries opaque bytes.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

HANDSHAKE_S = 10.0  # a client that does not finish its TLS handshake in this time is dropped
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Peer:
    """Who is at the other end: its address as grpc writes it, and its TLS certificate when it showed one."""

    address: str
    certificate: dict[str, Any] = field(default_factory=dict)
    certificate_pem: bytes = b""
    tls: bool = False

    def identities(self) -> list[bytes] | None:
        names = self._alt_names() or self._common_name()
        return names or None

    def identity_key(self) -> str | None:
        if self._alt_names():
            return "x509_subject_alternative_name"
        return "x509_common_name" if self._common_name() else None

    def auth_context(self) -> dict[str, list[bytes]]:
        if not self.tls:
            return {"transport_security_type": [b"insecure"]}
        context = {"transport_security_type": [b"ssl"], "security_level": [b"TSI_PRIVACY_AND_INTEGRITY"]}
        if self._alt_names():
            context["x509_subject_alternative_name"] = self._alt_names()
        if self._common_name():
            context["x509_common_name"] = self._common_name()
        if self.certificate_pem:
            context["x509_pem_cert"] = [self.certificate_pem]
        key = self.identity_key()
        if key:
            context["peer_identity_property_name"] = [key.encode()]  # as grpcio shows it
        return context

    def _alt_names(self) -> list[bytes]:
        return [value.encode() for _, value in self.certificate.get("subjectAltName", ())]

    def _common_name(self) -> list[bytes]:
        return [
            value.encode() for rdn in self.certificate.get("subject", ()) for key, value in rdn if key == "commonName"
        ]


def peer_address(sock: socket.socket, address: Any) -> str:
    """grpc's form of a peer: "unix:", "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555" (a v4-mapped address as v4)."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{address or ''}"
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6 and host.startswith("::ffff:") and "." in host:
        host = host.removeprefix("::ffff:")
    return f"ipv4:{host}:{port}" if "." in host and ":" not in host else f"ipv6:[{host}]:{port}"


class Transport:
    """Plain bytes: what is read is HTTP/2, what is written goes as it is."""

    tls = False

    def inbound(self, data: bytes) -> bytes:
        return data

    def outbound(self, data: bytes) -> bytes:
        return data

    def peer(self, address: str) -> Peer:
        return Peer(address)


class TLSTransport(Transport):
    """TLS over memory buffers; `handshake` runs it on the socket before the connection starts (with a time
    limit), then bytes pass through `inbound`/`outbound` under the connection's lock."""

    tls = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    def handshake(self, sock: socket.socket) -> None:
        """Run the handshake; ssl.SSLError or OSError when it fails (the caller drops the connection)."""
        sock.settimeout(HANDSHAKE_S)
        try:
            while True:
                try:
                    self._ssl.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush(sock)
                    data = sock.recv(READ_SIZE)
                    if not data:
                        raise ConnectionResetError("the client closed during the TLS handshake") from None
                    self._incoming.write(data)
            self._flush(sock)
        except ssl.SSLError:
            self._flush(sock)  # the alert, so the client learns why
            raise
        finally:
            sock.settimeout(None)

    def _flush(self, sock: socket.socket) -> None:
        pending = self._outgoing.read()
        if pending:
            sock.sendall(pending)

    def inbound(self, data: bytes) -> bytes:
        self._incoming.write(data)
        chunks = []
        while True:
            try:
                chunk = self._ssl.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def outbound(self, data: bytes) -> bytes:
        if data:
            self._ssl.write(data)
        return self._outgoing.read()

    def peer(self, address: str) -> Peer:
        certificate = self._ssl.getpeercert() or {}
        der = self._ssl.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der).encode() if der else b""
        return Peer(address, certificate, pem, tls=True)
