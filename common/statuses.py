"""What a server tells a client that it refuses: the reason whole, what it quotes of a value only in part.

A reason often quotes the value it refuses (a filter, a regex, a label). Quoted whole, a 60 KB filter value made
the status larger than the client's metadata limit, and the client saw "received metadata size exceeds hard
limit" instead of the reason. Every status detail of a flowscope server goes through `brief`, in one place: the
interceptor that both the agent's and the relay's servers install.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

HEAD = 100  # characters kept from the start of a long detail: the reason and the start of what it quotes
TAIL = 40  # and from its end: what a reason says after the value
LIMIT = 180  # details up to this long go out whole; brief's own output always fits in it


def brief(detail: str) -> str:
    """`detail` if short, else its start and end around a note of how much was left out."""
    if len(detail) <= LIMIT:
        return detail
    return f"{detail[:HEAD]}… ({len(detail) - HEAD - TAIL} characters left out) …{detail[-TAIL:]}"


class BriefContext:
    """A ServicerContext whose abort and set_details send a brief detail; everything else is the context's."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.abort(code, brief(details))

    def set_details(self, details: str) -> None:
        self._context.set_details(brief(details))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class BriefStatuses(grpc.ServerInterceptor):
    """Gives every handler of a server a BriefContext."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        for kind, make in _KINDS.items():
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make(
                    _briefed(behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


def _briefed(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        return behaviour(request, BriefContext(context))

    return call


_KINDS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}
