"""What every servicer method shares: call id, deadline -> AMQP timeout, error mapping, access log."""
from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable

import grpc

from crm_common.errors import InvalidArgument
from crm_common.validation import Violations

from .amqp_rpc import AmqpRpcClient, RpcTimeout
from .errors import is_internal, to_status

log = logging.getLogger("crm_gateway.access")

DEFAULT_TIMEOUT = 10.0   # seconds, when the caller sets no deadline
MAX_TIMEOUT = 30.0       # cap on the AMQP timeout, whatever the caller's deadline
MAX_PAGE_SIZE = 500
REQUEST_ID = "x-request-id"   # metadata key: the caller may set it; every reply carries it
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def request_id(context: grpc.aio.ServicerContext, method: str) -> str:
    """The caller's ``x-request-id`` when well-formed, else a new one. It becomes the
    root of nameko's call-id stack, so it is in every log line the request causes,
    across services and event handlers."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID and isinstance(value, str) and _REQUEST_ID_RE.match(value):
            return value
    return f"gateway.{method}.{uuid.uuid4().hex}"


class Call:
    """One gRPC request's view of the RPC client: its call id and its remaining time."""

    __slots__ = ("rpc", "call_id", "deadline")

    def __init__(self, rpc: AmqpRpcClient, call_id: str, timeout: float):
        self.rpc = rpc
        self.call_id = call_id
        self.deadline = time.monotonic() + timeout

    async def __call__(self, service: str, method: str, **kwargs: Any) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RpcTimeout(f"{service}.{method}: deadline exceeded")
        return await self.rpc.call(service, method, kwargs, timeout=remaining, call_id=self.call_id)


def timeout_from(context: grpc.aio.ServicerContext, default: float = DEFAULT_TIMEOUT,
                 cap: float = MAX_TIMEOUT) -> float:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e6:  # no deadline
        return default
    return min(remaining, cap)


class Servicer:
    """Base of the crm.v1 servicers. ``rpc`` is the shared AMQP RPC client."""

    grpc_service = ""
    default_service = ""  # the nameko service called

    def __init__(self, rpc: AmqpRpcClient, *, default_timeout: float = DEFAULT_TIMEOUT,
                 max_timeout: float = MAX_TIMEOUT, service: str | None = None):
        self.rpc = rpc
        self.service = service or self.default_service
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout


def rpc_method(fn: Callable[[Any, Any, Call], Awaitable[Any]]):
    """Wrap ``async def Method(self, request, call)`` into a grpc.aio unary handler."""
    method = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Servicer, request: Any, context: grpc.aio.ServicerContext):
        call_id = request_id(context, method)
        t0 = time.perf_counter()
        try:
            call = Call(self.rpc, call_id,
                        timeout_from(context, self.default_timeout, self.max_timeout))
            response = await fn(self, request, call)
        except Exception as exc:  # mapped below; AbortError is not an Exception subclass issue
            status = to_status(exc, call_id)
            ms = (time.perf_counter() - t0) * 1000
            if is_internal(exc):
                log.error("rpc failed", exc_info=exc, extra={"call_id": call_id, "grpc_method": method,
                                                            "grpc_code": status.code.name,
                                                            "duration_ms": round(ms, 2)})
            elif log.isEnabledFor(logging.INFO):
                log.info("rpc", extra={"call_id": call_id, "grpc_method": method,
                                       "grpc_code": status.code.name, "duration_ms": round(ms, 2),
                                       "error": f"{type(exc).__name__}: {exc}"})
            await context.abort(status.code, status.details,
                                tuple(status.trailing_metadata or ()) + ((REQUEST_ID, call_id),))
        context.set_trailing_metadata(((REQUEST_ID, call_id),))
        if log.isEnabledFor(logging.INFO):
            log.info("rpc", extra={"call_id": call_id, "grpc_method": method, "grpc_code": "OK",
                                   "duration_ms": round((time.perf_counter() - t0) * 1000, 2)})
        return response

    return handler


# ---------------------------------------------------------------- edge validation

def check(v: Violations) -> None:
    v.raise_if_any()


def require(v: Violations, value: str, field: str, max_len: int = 200) -> None:
    if not value or not value.strip():
        v.add(field, "is required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")


def page_size(v: Violations, value: int) -> None:
    if value < 0 or value > MAX_PAGE_SIZE:
        v.add("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")


def invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument.field(field, description)
