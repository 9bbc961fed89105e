"""What a handler of common/h2grpc's Server sees of its call: the part of grpc.ServicerContext flowscope's
servicers and grpc_health use, with the same meaning, so a servicer written for grpcio runs here unchanged.

A handler ends its call with a status in one of three ways, as under grpcio: it returns (the code and details
it set, OK by default), it calls abort (which raises, and wins even if the handler catches what it raised),
or it raises anything else (UNKNOWN, "Exception calling application: ..."). The call's state itself (its
stream, its buffer, whether it is still active) is the connection's (common/h2grpc/call.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from flowscope.common.h2grpc.call import Call

Metadata = tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """What abort raises: the handler's way out, caught by the server, which sends the status it carries."""


class ServicerContext(grpc.ServicerContext):
    def __init__(self, call: Call) -> None:
        self._call = call
        self.code_set: grpc.StatusCode | None = None
        self.details_set: str | None = None
        self.aborted = False
        self.trailing: Metadata = ()

    # The call's status, as the handler leaves it.

    def abort(self, code: grpc.StatusCode, details: str) -> Any:
        if code == grpc.StatusCode.OK:  # grpcio refuses this too: an abort is an error
            code, details = grpc.StatusCode.UNKNOWN, details or "abort with OK"
        self.code_set, self.details_set, self.aborted = code, details, True
        raise Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> Any:
        self.trailing = tuple(status.trailing_metadata or ())
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code_set = code

    def set_details(self, details: str) -> None:
        self.details_set = details

    def code(self) -> grpc.StatusCode | None:
        return self.code_set

    def details(self) -> str | None:
        return self.details_set

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self.trailing

    def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._call.send_headers(tuple(initial_metadata))

    # The call's life.

    def is_active(self) -> bool:
        return self._call.active

    def cancel(self) -> None:
        """End the call now: the client sees CANCELLED after what it was sent (as grpcio's cancel)."""
        self._call.cancel(reset=True)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """`callback` runs once the call ends, however it ends; False (not added) when it already has."""
        return self._call.add_callback(callback)

    def time_remaining(self) -> float | None:
        deadline = self._call.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    # Who calls.

    def invocation_metadata(self) -> Metadata:
        return self._call.metadata

    def peer(self) -> str:
        return self._call.peer.address

    def peer_identities(self) -> list[bytes] | None:
        return self._call.peer.identities()

    def peer_identity_key(self) -> str | None:
        return self._call.peer.identity_key()

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._call.peer.auth_context()

    # Compression is never used here: what a handler asks of it changes nothing on the wire.

    def set_compression(self, compression: grpc.Compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass
