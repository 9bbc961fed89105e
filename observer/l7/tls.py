"""The server name (SNI) in a TLS ClientHello, read from the first bytes a client sends on a connection.

The ClientHello is the one TLS message that names the server in clear text (until Encrypted Client Hello): it
tells which site a pod reached over HTTPS with no proxy and no keys. The parser walks the record layer, the
handshake header and the fixed fields to the extensions, and stops where the capture does: what is complete is
returned, marked truncated. It never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTENT_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 1
EXTENSION_SERVER_NAME = 0
NAME_TYPE_HOST = 0
RECORD_HEADER = 5
RANDOM_LEN = 32
MAX_RECORDS = 8  # a ClientHello split over more records than this is not one a client sends

_HOST_NAME = re.compile(rb"[\x21-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class TlsHello:
    """A ClientHello's server name ("" when it sent none); `truncated`: the capture ended before its end."""

    server_name: str
    truncated: bool


class _Short(Exception):
    """The capture ended here."""


class _Reader:
    """A cursor over the handshake bytes; reading past their end raises _Short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise _Short
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))


def _handshake_bytes(payload: bytes) -> tuple[bytes, bool] | None:
    """The handshake bytes of the leading handshake records, and whether a record was cut; None: not TLS."""
    fragments: list[bytes] = []
    offset = 0
    for _ in range(MAX_RECORDS):
        header = payload[offset : offset + RECORD_HEADER]
        if len(header) < RECORD_HEADER:
            return (b"".join(fragments), True) if fragments else None
        if header[0] != CONTENT_HANDSHAKE or header[1] != 3 or header[2] > 4:
            return (b"".join(fragments), False) if fragments else None
        length = int.from_bytes(header[3:5], "big")
        fragment = payload[offset + RECORD_HEADER : offset + RECORD_HEADER + length]
        fragments.append(fragment)
        if len(fragment) < length:
            return b"".join(fragments), True
        offset += RECORD_HEADER + length
        if offset >= len(payload):
            break
    return b"".join(fragments), False


def parse_client_hello(payload: bytes) -> TlsHello | None:
    """The ClientHello a TCP payload starts with; None when the payload does not start with one."""
    found = _handshake_bytes(payload)
    if found is None:
        return None
    data, cut = found
    if not data or data[0] != HANDSHAKE_CLIENT_HELLO:
        return None
    if len(data) < 4:
        return TlsHello("", True)
    declared = int.from_bytes(data[1:4], "big")
    hello = _Reader(data[4 : 4 + declared])
    truncated = cut or len(hello.data) < declared
    server_name = ""
    try:
        hello.take(2 + RANDOM_LEN)  # legacy_version, random
        hello.vector(1)  # legacy_session_id
        hello.vector(2)  # cipher_suites
        hello.vector(1)  # legacy_compression_methods
        if hello.offset == declared:
            return TlsHello("", truncated)  # no extensions at all (TLS 1.0 era)
        # The extensions as far as captured: the server name is often among the first.
        length = hello.number(2)
        extensions = _Reader(hello.data[hello.offset : hello.offset + length])
        truncated = truncated or len(extensions.data) < length
        while extensions.offset < len(extensions.data):
            kind = extensions.number(2)
            body = extensions.vector(2)
            if kind == EXTENSION_SERVER_NAME:
                server_name = _host_name(body)
                break
    except _Short:
        return TlsHello(server_name, True)
    return TlsHello(server_name, truncated)


def _host_name(extension: bytes) -> str:
    """The host_name entry of a server_name extension (RFC 6066 3), lower-case; "" when it has none usable."""
    names = _Reader(extension)
    try:
        entries = _Reader(names.vector(2))
        while entries.offset < len(entries.data):
            name_type = entries.number(1)
            name = entries.vector(2)
            if name_type == NAME_TYPE_HOST:
                return name.decode().lower() if _HOST_NAME.fullmatch(name) else ""
    except _Short:
        return ""
    return ""
