"""The call id nameko propagates (``nameko.call_id_stack`` header), made visible to logs.

``call_id_stack[0]`` is where the request entered the system (the gateway's call id),
so one request can be followed gateway → service → event handler.
"""
from __future__ import annotations

from .. import logs


def set_current(worker_ctx) -> None:
    stack = list(getattr(worker_ctx, "call_id_stack", None) or [])
    logs.set_ids(stack[0] if stack else None, stack[-1] if stack else None)


def clear() -> None:
    logs.clear_ids()


def request_id() -> str | None:
    return logs.request_id()
