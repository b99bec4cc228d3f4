"""The generic bridge: every public RPC ``/crm.v1.<X>Service/<Method>`` reaches the
nameko RPC ``<service>.<method>`` that the registry maps it to, with no code per RPC.

Per call: parse the request bytes (not a valid message -> INVALID_ARGUMENT), turn it
into kwargs (crm_gateway.wire), call the service with the caller's deadline as the
AMQP timeout and the request id as the root of nameko's call-id stack, turn the
service's dict into the response, map any error to its gRPC status (crm_gateway.errors,
the one table). The service validates the arguments (its contract models); the
gateway's own business is the edge: identity (crm_gateway.auth), the rate limit of the
caller (crm_gateway.ratelimit), message size, deadline and request id. The principal
travels on as an internal token (crm_common.access); the service verifies it and decides
the permission (PERMISSION_DENIED), as it does for every call it receives, and records a
refusal in its own audit trail: one place decides who may do what, and a refused
attempt through the gateway is in the trail like one that skipped it.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import time
import uuid
from typing import Any, Awaitable, Callable

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from crm_common import access
from crm_common.errors import CrmError, InvalidArgument, PermissionDenied, ResourceExhausted
from crm_common.registry import Registry, snake_case

from . import metrics, wire
from .amqp_rpc import AmqpRpcClient, RpcTimeout
from .auth import Authenticator
from .errors import is_internal, to_status
from .ratelimit import RateLimiter

log = logging.getLogger("crm_gateway.access")

REQUEST_ID = "x-request-id"   # metadata key: the caller may set it; every reply carries it
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

Work = Callable[["Call", bytes], Awaitable[bytes]]


def load_api(package: str = "crm.v1") -> None:
    """Import every generated ``*_pb2`` module of the public API, so its services and
    messages are in the default descriptor pool (for routing and reflection)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def request_id(context: grpc.aio.ServicerContext, method: str) -> str:
    """The caller's ``x-request-id`` when well-formed, else a new one. It becomes the
    root of nameko's call-id stack, so it is in every log line the request causes,
    across services and event handlers."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID and isinstance(value, str) and _REQUEST_ID_RE.match(value):
            return value
    return f"gateway.{method}.{uuid.uuid4().hex}"


class Call:
    """One gRPC request's view of the RPC client: its call id, its remaining time and the
    caller's internal token."""

    __slots__ = ("rpc", "call_id", "deadline", "context")

    def __init__(self, rpc: AmqpRpcClient, call_id: str, timeout: float, token: str = ""):
        self.rpc = rpc
        self.call_id = call_id
        self.deadline = time.monotonic() + timeout
        self.context = {access.CONTEXT_KEY: token} if token else {}

    async def __call__(self, service: str, method: str, kwargs: dict[str, Any]) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RpcTimeout(f"{service}.{method}: deadline exceeded")
        return await self.rpc.call(service, method, kwargs, timeout=remaining, call_id=self.call_id,
                                   context=self.context)


class Guard:
    """The caller's side of the edge, in order: who (UNAUTHENTICATED), not too often
    (RESOURCE_EXHAUSTED, refused attempts included); then their internal token. May they
    is the service's question (it answers every call, also one that skips the gateway)."""

    def __init__(self, auth: Authenticator, tokens: access.TokenCache, limiter: RateLimiter):
        self.auth, self.tokens, self.limiter = auth, tokens, limiter

    async def admit(self, context: grpc.aio.ServicerContext) -> tuple[access.Principal, str]:
        principal = await self.auth.authenticate(context.invocation_metadata())
        self.limiter.take(principal)
        return principal, self.tokens.token(principal)


def parse(cls: type[Message], raw: bytes) -> Message:
    try:
        return cls.FromString(raw)
    except (DecodeError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the request is not a valid {cls.DESCRIPTOR.full_name} message "
                              "(truncated, or a string field that is not UTF-8)",
                              {"reason": str(exc)[:200]}) from None


class Bridge:
    def __init__(self, rpc: AmqpRpcClient, registry: Registry, guard: Guard, *, default_timeout: float,
                 max_timeout: float, max_reply_bytes: int = 4 * 1024 * 1024):
        self.rpc = rpc
        self.registry = registry
        self.guard = guard
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.max_reply_bytes = max_reply_bytes
        self.pool = descriptor_pool.Default()

    # -- one handler per public service ------------------------------------------------
    def routed_services(self) -> list[str]:
        return list(self.registry.grpc_routes())

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for grpc_service, backer in self.registry.grpc_backers().items():
            service = self.pool.FindServiceByName(grpc_service)
            methods = {m.name: self.handler(m.name, self.forward(m, backer.name)) for m in service.methods}
            handlers.append(grpc.method_handlers_generic_handler(grpc_service, methods))
        return handlers

    def forward(self, method: MethodDescriptor, service: str) -> Work:
        """The work of a routed RPC: request -> kwargs -> ``service.<snake_case>`` -> response."""
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        target = snake_case(method.name)

        max_reply = self.max_reply_bytes

        async def work(call: Call, raw: bytes) -> bytes:
            kwargs = wire.to_dict(parse(request_cls, raw))
            result = await call(service, target, kwargs)
            reply = wire.fill(response_cls(), result or {}).SerializeToString()
            if len(reply) > max_reply:
                raise ResourceExhausted(f"the reply would be {len(reply)} bytes, over the gateway's limit of "
                                        f"{max_reply}: ask for less (a smaller page size)")
            return reply

        return work

    # -- what every call shares: request id, deadline, error mapping, access log -----------
    def handler(self, method: str, work: Work) -> grpc.RpcMethodHandler:
        """``method`` (the gRPC name) as a handler doing ``work`` for an admitted caller."""
        default_timeout, max_timeout, rpc, guard = self.default_timeout, self.max_timeout, self.rpc, self.guard

        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            call_id = request_id(context, method)
            t0 = time.perf_counter()
            principal = None
            try:
                try:
                    principal, token = await guard.admit(context)
                except CrmError as denied:
                    metrics.DENIED.labels(denied.code).inc()
                    raise
                remaining = context.time_remaining()
                timeout = default_timeout if remaining is None or remaining > 1e6 else min(remaining, max_timeout)
                response = await work(Call(rpc, call_id, timeout, token), raw)
            except Exception as exc:  # every failure leaves as a status from the one table
                status = to_status(exc, call_id)
                if isinstance(exc, PermissionDenied):   # the service refused (and recorded) it
                    metrics.DENIED.labels(exc.code).inc()
                ms = round((time.perf_counter() - t0) * 1000, 2)
                fields = {"call_id": call_id, "grpc_method": method, "grpc_code": status.code.name,
                          "duration_ms": ms, "principal": principal.subject if principal else None}
                if is_internal(exc):
                    log.error("rpc failed", exc_info=exc, extra=fields)
                elif log.isEnabledFor(logging.INFO):
                    log.info("rpc", extra={**fields, "error": f"{type(exc).__name__}: {exc}"})
                await context.abort(status.code, status.details,
                                    tuple(status.trailing_metadata or ()) + ((REQUEST_ID, call_id),))
            context.set_trailing_metadata(((REQUEST_ID, call_id),))
            if log.isEnabledFor(logging.INFO):
                log.info("rpc", extra={"call_id": call_id, "grpc_method": method, "grpc_code": "OK",
                                       "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
                                       "principal": principal.subject})
            return response

        return grpc.unary_unary_rpc_method_handler(handle)
