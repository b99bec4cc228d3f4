"""Prometheus metrics named like go-grpc-prometheus, recorded by a grpc.aio server interceptor.

* ``grpc_server_started_total{grpc_type,grpc_service,grpc_method}``
* ``grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}``
* ``grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`` (histogram)
* ``crm_gateway_amqp_connected`` (gauge, 1 while the RPC client is connected)
* ``crm_gateway_denied_total{reason}``: calls refused to callers: at the edge (no or bad
  credentials, rate limited) or by the service they reached (no permission)

``grpc_code`` values are spelled as Go's ``codes.Code.String()`` ("OK", "NotFound",
"Unavailable"), as go-grpc-prometheus records them, so stock dashboards and alerts work.

Unary-unary methods are measured (every crm.v1 RPC and health Check); streaming
methods (health Watch, reflection) pass through untouched.
"""
from __future__ import annotations

import time
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

STARTED = Counter("grpc_server_started_total", "Total number of RPCs started on the server.",
                  ["grpc_type", "grpc_service", "grpc_method"])
HANDLED = Counter("grpc_server_handled_total",
                  "Total number of RPCs completed on the server, regardless of success or failure.",
                  ["grpc_type", "grpc_service", "grpc_method", "grpc_code"])
HANDLING = Histogram("grpc_server_handling_seconds",
                     "Histogram of response latency (seconds) of gRPC that had been application-level "
                     "handled by the server.", ["grpc_type", "grpc_service", "grpc_method"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DENIED = Counter("crm_gateway_denied_total", "Calls refused to gateway callers, by reason: UNAUTHENTICATED and "
                 "RESOURCE_EXHAUSTED at the gateway, PERMISSION_DENIED by the service reached.", ["reason"])
for _reason in ("UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"):
    DENIED.labels(_reason)
AMQP_CONNECTED = Gauge("crm_gateway_amqp_connected", "1 while the gateway's AMQP RPC client is connected.")


# Go spells two codes differently from the CamelCase of Python's names.
_GO_SPELLING = {"OK": "OK", "CANCELLED": "Canceled"}


def code_label(code: grpc.StatusCode) -> str:
    """grpc.StatusCode.NOT_FOUND -> 'NotFound' (go-grpc-prometheus' grpc_code value)."""
    return _GO_SPELLING.get(code.name) or "".join(part.capitalize() for part in code.name.split("_"))


def split_method(full: str) -> tuple[str, str]:
    """'/crm.v1.ContactsService/GetContact' -> ('crm.v1.ContactsService', 'GetContact')."""
    _, service, method = full.split("/", 2) if full.count("/") >= 2 else ("", "unknown", full)
    return service, method


class _MethodMetrics:
    __slots__ = ("started", "handling", "handled", "labels")

    def __init__(self, service: str, method: str):
        self.labels = ("unary", service, method)
        self.started = STARTED.labels(*self.labels)
        self.handling = HANDLING.labels(*self.labels)
        self.handled: dict[Any, Any] = {}

    def done(self, code: grpc.StatusCode, seconds: float) -> None:
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = HANDLED.labels(*self.labels, code_label(code))
        child.inc()
        self.handling.observe(seconds)


def _code_of(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:  # pragma: no cover - older grpcio
        return default
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    for sc in grpc.StatusCode:  # an int from the C core
        if sc.value[0] == code:
            return sc
    return default


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method in self._cache:
            return self._cache[method]
        handler = await continuation(handler_call_details)
        wrapped = self._wrap(method, handler)
        self._cache[method] = wrapped
        return wrapped

    @staticmethod
    def _wrap(full_method: str, handler):
        if handler is None or handler.unary_unary is None or handler.request_streaming \
                or handler.response_streaming:
            return handler
        m = _MethodMetrics(*split_method(full_method))
        behavior = handler.unary_unary

        async def measured(request, context):
            m.started.inc()
            t0 = time.perf_counter()
            try:
                response = await behavior(request, context)
            except grpc.aio.AbortError:
                m.done(_code_of(context, grpc.StatusCode.UNKNOWN), time.perf_counter() - t0)
                raise
            except BaseException:
                m.done(grpc.StatusCode.UNKNOWN, time.perf_counter() - t0)
                raise
            m.done(_code_of(context, grpc.StatusCode.OK), time.perf_counter() - t0)
            return response

        return grpc.unary_unary_rpc_method_handler(
            measured, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
