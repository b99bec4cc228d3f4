"""Typed domain errors with a stable wire form.

Services raise these; nameko serializes an exception as ``exc_type`` (class name),
``exc_path``, ``value`` and ``exc_args``. Our errors keep ``exc_args`` JSON-safe and
fixed as ``[message, details]`` so the gateway (which never imports nameko) can
rebuild the same class with :func:`from_remote` and map it to a gRPC status through
the single table in the gateway.
"""
from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """Base of every error a caller is meant to see and act on."""

    code = "INTERNAL"

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        details = dict(details or {})
        super().__init__(message, details)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class NotFound(CrmError):
    code = "NOT_FOUND"


class AlreadyExists(CrmError):
    """A unique thing exists already; ``details["existing_id"]`` names it."""

    code = "ALREADY_EXISTS"


class VersionConflict(CrmError):
    """Optimistic concurrency: the caller's ``expected_version`` is stale."""

    code = "ABORTED"


class InvalidArgument(CrmError):
    """Bad input; ``details["violations"]`` lists ``{"field", "description"}``."""

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *,
                 violations: list[dict[str, str]] | None = None):
        details = dict(details or {})
        if violations is not None:
            details["violations"] = violations
        details.setdefault("violations", [])
        super().__init__(message, details)

    @property
    def violations(self) -> list[dict[str, str]]:
        return self.details["violations"]

    @classmethod
    def field(cls, field: str, description: str) -> "InvalidArgument":
        return cls(f"{field}: {description}", violations=[{"field": field, "description": description}])


class FailedPrecondition(CrmError):
    """The request is valid but the system is not in a state to honour it."""

    code = "FAILED_PRECONDITION"


class PermissionDenied(CrmError):
    code = "PERMISSION_DENIED"


class Unauthenticated(CrmError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(CrmError):
    """Too much: a rate limit or a size limit (details may say when to retry)."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(CrmError):
    """Another service this call needs did not answer in time: retry later."""

    code = "UNAVAILABLE"


ERROR_TYPES: dict[str, type[CrmError]] = {
    cls.__name__: cls
    for cls in (CrmError, NotFound, AlreadyExists, VersionConflict, InvalidArgument,
                FailedPrecondition, PermissionDenied, Unauthenticated, ResourceExhausted, Unavailable)
}


def from_remote(error: dict[str, Any]) -> CrmError | None:
    """Rebuild a CrmError from nameko's serialized ``error`` dict, or None if it is not ours."""
    cls = ERROR_TYPES.get(error.get("exc_type", ""))
    path = error.get("exc_path") or ""
    if cls is None or not path.startswith("crm_common.errors."):
        return None
    args = error.get("exc_args") or []
    message = args[0] if args and isinstance(args[0], str) else str(error.get("value", ""))
    details = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    if cls is InvalidArgument:
        return InvalidArgument(message, details)
    return cls(message, details)
