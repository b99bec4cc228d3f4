"""THE one table from error types to gRPC status codes, and the rich status built from an error.

Everything a servicer can raise goes through :func:`to_status`; nothing else in the
gateway decides a status code. Unknown errors become INTERNAL with a generic message
naming the call id (never the exception text or a stack trace).
"""
from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from crm_common import errors as E

from .amqp_rpc import RemoteError, RpcTimeout, ServiceUnavailable

ERROR_DOMAIN = "crm.v1"

# Order matters only for subclasses (most specific first); lookups walk the MRO.
STATUS_TABLE: dict[type[BaseException], grpc.StatusCode] = {
    E.NotFound: grpc.StatusCode.NOT_FOUND,
    E.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    E.VersionConflict: grpc.StatusCode.ABORTED,
    E.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    E.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    E.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    E.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    E.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.Unavailable: grpc.StatusCode.UNAVAILABLE,
    RpcTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    ServiceUnavailable: grpc.StatusCode.UNAVAILABLE,
}

# Codes whose message is safe to show the client (the service wrote it for callers).
_CLIENT_VISIBLE = {
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED,
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED,
}

_GENERIC = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline exceeded before the service answered",
    grpc.StatusCode.UNAVAILABLE: "service unavailable, retry later",
}


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS_TABLE.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def _message(exc: BaseException, code: grpc.StatusCode, call_id: str) -> str:
    if code in _CLIENT_VISIBLE:
        msg = getattr(exc, "message", None) or str(exc) or code.name.lower()
        details = getattr(exc, "details", None) or {}
        if code is grpc.StatusCode.ALREADY_EXISTS:
            existing = details.get("existing_id")
            if existing and existing not in msg:
                msg = f"{msg} (existing_id: {existing})"
        elif code is grpc.StatusCode.INVALID_ARGUMENT:
            violations = details.get("violations") or []
            if violations:
                field = violations[0].get("field", "")
                if field and field not in msg:
                    msg = f"{field}: {msg}"
        return msg
    if code in _GENERIC:
        return f"{_GENERIC[code]} (call id {call_id})"
    return f"internal error (call id {call_id})"


def _pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def to_status(exc: BaseException, call_id: str = "") -> grpc.Status:
    """The grpc.Status (code, message, trailers with google.rpc.Status) for ``exc``."""
    code = status_code_for(exc)
    message = _message(exc, code, call_id)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if code in _CLIENT_VISIBLE and isinstance(exc, E.CrmError):
        details = exc.details or {}
        violations = details.get("violations") or []
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            status.details.append(_pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=str(v.get("field", "")), description=str(v.get("description", "")))
                for v in violations if isinstance(v, dict)
            ])))
        retry = details.get("retry_after_seconds")
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and isinstance(retry, (int, float)):
            delay = error_details_pb2.RetryInfo()
            delay.retry_delay.FromMilliseconds(int(retry * 1000))
            status.details.append(_pack(delay))
        metadata = {k: str(v) for k, v in details.items()
                    if k != "violations" and isinstance(v, (str, int, float, bool))}
        if metadata or code is not grpc.StatusCode.INVALID_ARGUMENT:
            status.details.append(_pack(error_details_pb2.ErrorInfo(
                reason=code.name, domain=ERROR_DOMAIN, metadata=metadata)))
    return rpc_status.to_status(status)


def is_internal(exc: BaseException) -> bool:
    return status_code_for(exc) is grpc.StatusCode.INTERNAL


__all__ = ["STATUS_TABLE", "status_code_for", "to_status", "is_internal", "RemoteError"]
