"""The call id nameko propagates (``nameko.call_id_stack`` header), made visible to logs.

``call_id_stack[0]`` is where the request entered the system (the gateway's call id),
so one request can be followed gateway → service → event handler.
"""
from __future__ import annotations

import logging
import threading

_local = threading.local()  # green under eventlet's monkey patching: one per worker


def set_current(worker_ctx) -> None:
    stack = list(getattr(worker_ctx, "call_id_stack", None) or [])
    _local.request_id = stack[0] if stack else None
    _local.call_id = stack[-1] if stack else None


def clear() -> None:
    _local.request_id = None
    _local.call_id = None


def request_id() -> str | None:
    return getattr(_local, "request_id", None)


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(_local, "request_id", None) or "-"
        record.call_id = getattr(_local, "call_id", None) or "-"
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s call_id=%(call_id)s %(message)s"


def logging_config(level: str = "INFO") -> dict:
    """A dictConfig for nameko's ``LOGGING`` config key."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"call_id": {"()": "crm_common.nameko.context.CallIdFilter"}},
        "formatters": {"line": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line",
                                "filters": ["call_id"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"nameko.containers": {"level": "ERROR"}},
    }
