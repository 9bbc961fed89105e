"""gRPC's few rules above HTTP/2, written once for the server and the client of common/h2grpc.

A gRPC message on an HTTP/2 stream is a 5-byte prefix (a compressed flag, then the length, big-endian) and the
message's bytes; many may share one DATA frame and one may span several, which is what lets a stream carry
thousands of flows in a handful of writes. A call ends in trailers: `grpc-status` (the status code's number) and
`grpc-message` (its details, percent-encoded). A deadline travels as `grpc-timeout` (digits and a unit).
See docs/reference/grpc-http2.md for the protocol as both ends read it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from urllib.parse import quote, unquote

import grpc

PREFIX = struct.Struct(">BI")  # compressed flag, message length
MAX_MESSAGE = 4 * 1024 * 1024  # gRPC's default limit for a received message; larger is RESOURCE_EXHAUSTED


class ProtocolError(ValueError):
    """Bytes that are no gRPC message stream: a compressed message nobody asked for, or one past the limit."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def framed(message: bytes) -> bytes:
    """One message as it travels: its prefix, then its bytes."""
    return PREFIX.pack(0, len(message)) + message


def framed_all(messages: Iterable[bytes]) -> bytes:
    """Several messages back to back, as one write."""
    return b"".join(PREFIX.pack(0, len(m)) + m for m in messages)


class MessageSplitter:
    """Cuts a stream's DATA back into messages, whatever the frame boundaries were."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._limit = limit
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The messages `data` completes, in order; what is left waits for the next DATA."""
        buffer = self._pending
        buffer += data
        messages: list[bytes] = []
        start, size = 0, len(buffer)
        while size - start >= 5:
            compressed, length = PREFIX.unpack_from(buffer, start)
            if compressed:
                raise ProtocolError(grpc.StatusCode.INTERNAL, "a compressed message, and no compression was agreed")
            if length > self._limit:
                raise ProtocolError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"a message of {length} bytes is larger than the limit of {self._limit}",
                )
            end = start + 5 + length
            if end > size:
                break
            messages.append(bytes(buffer[start + 5 : end]))
            start = end
        if start:
            del buffer[:start]
        return messages

    @property
    def partial(self) -> bool:
        """Whether a message began and did not end (a stream that ends here was cut short)."""
        return bool(self._pending)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number


def status_code(number: int) -> grpc.StatusCode:
    """The code for a `grpc-status`; a number gRPC does not define is UNKNOWN, as gRPC's clients read it."""
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


# gRPC's percent-encoding: printable ASCII other than '%' stays as it is, everything else is %XX of its UTF-8.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def encode_details(details: str) -> str:
    return quote(details, safe=_SAFE)


def decode_details(value: str) -> str:
    """What a `grpc-message` says; a bad escape is kept as it came, never an error."""
    return unquote(value, errors="replace")


_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float | None:
    """Seconds from a `grpc-timeout` ("100m", "5S"); None when it is not one (the call then has no deadline)."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]


def format_timeout(seconds: float) -> str:
    """A `grpc-timeout` for `seconds`: at most 8 digits, in the finest unit that fits."""
    for unit, scale in (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0)):
        amount = max(0, int(seconds / scale + 0.999))
        if amount < 100_000_000:
            return f"{amount}{unit}"
    return f"{min(99_999_999, int(seconds / 3600) + 1)}H"
