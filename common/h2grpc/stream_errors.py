"""How a stream read by common/h2grpc/client.py ends other than OK, in grpcio's terms.

A client written against grpcio catches grpc.RpcError and asks code() and details(); a StreamError answers the
same, with the words grpcio would have used, so those code paths stay as they are. The mappings here are
gRPC's own readings of what HTTP/2 says: an HTTP status that is not 200, a reset stream, a GOAWAY.
"""

from __future__ import annotations

import grpc
import h2.errors

CANCELLED_DETAILS = "Locally cancelled by application!"  # grpcio's words

Metadata = tuple[tuple[str, str], ...]


class StreamError(grpc.RpcError):
    """A call that ended other than OK, raised by iteration as grpcio raises its own."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._trailing = trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def __str__(self) -> str:
        return f"<StreamError of RPC that terminated with:\n\tstatus = {self._code}\n\tdetails = {self._details!r}\n>"


def http_status_code(status: str) -> grpc.StatusCode:
    """gRPC's reading of an HTTP status that is not 200 (its http-grpc-status-mapping.md)."""
    return {
        "400": grpc.StatusCode.INTERNAL,
        "401": grpc.StatusCode.UNAUTHENTICATED,
        "403": grpc.StatusCode.PERMISSION_DENIED,
        "404": grpc.StatusCode.UNIMPLEMENTED,
        "429": grpc.StatusCode.UNAVAILABLE,
        "502": grpc.StatusCode.UNAVAILABLE,
        "503": grpc.StatusCode.UNAVAILABLE,
        "504": grpc.StatusCode.UNAVAILABLE,
    }.get(status, grpc.StatusCode.UNKNOWN)


_RESET_CODES = {
    int(h2.errors.ErrorCodes.REFUSED_STREAM): grpc.StatusCode.UNAVAILABLE,
    int(h2.errors.ErrorCodes.CANCEL): grpc.StatusCode.CANCELLED,
    int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM): grpc.StatusCode.RESOURCE_EXHAUSTED,
    int(h2.errors.ErrorCodes.INADEQUATE_SECURITY): grpc.StatusCode.PERMISSION_DENIED,
}


def reset_error(error: int) -> StreamError:
    """A stream the server reset with `error` (RST_STREAM), as gRPC names it."""
    return StreamError(
        _RESET_CODES.get(int(error), grpc.StatusCode.INTERNAL), f"Received RST_STREAM with error code {int(error)}"
    )


def goaway_error(error: int, debug: bytes) -> StreamError:
    """A GOAWAY that ends our stream (an error, or ours not taken): UNAVAILABLE, with its code and debug text."""
    text = debug.decode("utf-8", "replace")
    return StreamError(
        grpc.StatusCode.UNAVAILABLE, f"GOAWAY received; Error code: {error}" + (f"; Debug Text: {text}" if text else "")
    )
