"""gRPC server metrics as go-grpc-prometheus names them, which Hubble Relay serves: an interceptor that counts
calls, and a collector that shows the counts when Prometheus scrapes.

- grpc_server_started_total{grpc_service, grpc_method, grpc_type}: calls begun
- grpc_server_handled_total{..., grpc_code}: calls ended, by status code (OK, INVALID_ARGUMENT, CANCELLED, ...)
- grpc_server_msg_received_total / grpc_server_msg_sent_total{...}: messages read and written

Everything is counted once per call, never per message: a relay streams every flow of the cluster through one
GetFlows call, and a count per message there would cost per flow. A streaming method whose server already keeps
its own count of responses (the relay's mergers count each batch they hand over) names that count in
`sent_counts` and is read from it; the messages of any other streaming method are counted as they go, which is
right for the few and small streams that are not flows. grpc_server_handling_seconds, off by default in Hubble
too, is not served.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}

MAKERS: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary": grpc.unary_unary_rpc_method_handler,
    "server_stream": grpc.unary_stream_rpc_method_handler,
    "client_stream": grpc.stream_unary_rpc_method_handler,
    "bidi_stream": grpc.stream_stream_rpc_method_handler,
}

Method = tuple[str, str, str]  # (grpc_service, grpc_method, grpc_type)
LABELS = ["grpc_service", "grpc_method", "grpc_type"]


def split_method(full: str) -> tuple[str, str]:
    """("observer.Observer", "GetFlows") of "/observer.Observer/GetFlows"."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service, method


class GrpcServerMetrics(grpc.ServerInterceptor, Collector):
    """Counts every call of the servers it is installed in (as their outermost interceptor, so it sees the status
    the others leave); its collect() is registered with a Prometheus registry."""

    def __init__(self, sent_counts: dict[str, Callable[[], int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._started: Counter[Method] = Counter()
        self._handled: Counter[tuple[Method, str]] = Counter()
        self._received: Counter[Method] = Counter()
        self._sent: Counter[Method] = Counter()
        self._types: dict[str, str] = {}  # full method name -> grpc_type, for the counts kept elsewhere
        self.sent_counts = dict(sent_counts or {})  # full method name -> its responses sent so far

    # Counting (the interceptor).

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method
        kind = TYPES[(handler.request_streaming, handler.response_streaming)]
        method: Method = (*split_method(full), kind)
        with self._lock:
            self._types[full] = kind
        counted_elsewhere = full in self.sent_counts
        behaviour: Any
        if handler.response_streaming:
            behaviour = handler.unary_stream or handler.stream_stream
            wrapped = self._stream(behaviour, method, counted_elsewhere)
        else:
            behaviour = handler.unary_unary or handler.stream_unary
            wrapped = self._unary(behaviour, method)
        return MAKERS[kind](
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _begin(self, method: Method, request: Any, streaming_requests: bool) -> Any:
        with self._lock:
            self._started[method] += 1
            if not streaming_requests:
                self._received[method] += 1
        if streaming_requests:
            return self._counted_requests(request, method)
        return request

    def _counted_requests(self, requests: Iterator[Any], method: Method) -> Iterator[Any]:
        for request in requests:
            with self._lock:
                self._received[method] += 1
            yield request

    def _end(self, method: Method, code: grpc.StatusCode, sent: int) -> None:
        with self._lock:
            self._handled[(method, code.name)] += 1
            self._sent[method] += sent

    def _unary(self, behaviour: Callable[[Any, Any], Any], method: Method) -> Callable[[Any, Any], Any]:
        streaming_requests = method[2] == "client_stream"

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            request = self._begin(method, request, streaming_requests)
            code = grpc.StatusCode.UNKNOWN
            try:
                response = behaviour(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except BaseException:
                code = _failed(context)
                raise
            finally:
                self._end(method, code, 1 if code == grpc.StatusCode.OK else 0)

        return call

    def _stream(
        self, behaviour: Callable[[Any, Any], Iterator[Any]], method: Method, counted_elsewhere: bool
    ) -> Callable[[Any, Any], Iterator[Any]]:
        streaming_requests = method[2] == "bidi_stream"

        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            request = self._begin(method, request, streaming_requests)
            code, sent = grpc.StatusCode.UNKNOWN, 0
            try:
                if counted_elsewhere:
                    yield from behaviour(request, context)
                else:
                    for response in behaviour(request, context):
                        sent += 1
                        yield response
                # A stream that ends because its client went away (a follow stream) ends without an error.
                code = context.code() or (grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED)
            except GeneratorExit:  # the server stopped reading it: the client went away
                code = context.code() or grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = _failed(context)
                raise
            finally:
                self._end(method, code, sent)

        return call

    # Reading (the collector).

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started, handled = dict(self._started), dict(self._handled)
            received, sent = dict(self._received), Counter(self._sent)
            types = dict(self._types)
        for full, sent_so_far in self.sent_counts.items():
            if full in types:
                sent[(*split_method(full), types[full])] += sent_so_far()
        yield _family("grpc_server_started", "Total number of RPCs started on the server.", started)
        family = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*LABELS, "grpc_code"],
        )
        for (method, code), count in sorted(handled.items()):
            family.add_metric([*method, code], count)
        yield family
        yield _family(
            "grpc_server_msg_received", "Total number of RPC stream messages received on the server.", received
        )
        yield _family("grpc_server_msg_sent", "Total number of gRPC stream messages sent by the server.", sent)


def _failed(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The code of a handler that raised: the one it aborted with, else UNKNOWN (as the server answers)."""
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) and code != grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN


def _family(name: str, help: str, counts: dict[Method, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help, labels=LABELS)
    for method, count in sorted(counts.items()):
        family.add_metric(list(method), count)
    return family
