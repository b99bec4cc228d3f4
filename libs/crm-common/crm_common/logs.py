"""One log format in every process: one JSON object per line on stderr
(``ts, level, logger, msg`` + any extra fields), and the ids that let one request be
followed across processes: ``request_id`` (where it entered the system, the gateway's
call id) and ``call_id`` (this hop), set per unit of work by the nameko services
(crm_common.nameko.context) and passed as ``extra`` by the gateway.
"""
from __future__ import annotations

import json
import logging
import logging.config
import threading
import time

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_ids = threading.local()   # green-local under eventlet's monkey patching: one per worker


def set_ids(request_id: str | None, call_id: str | None) -> None:
    _ids.request_id = request_id
    _ids.call_id = call_id


def clear_ids() -> None:
    set_ids(None, None)


def request_id() -> str | None:
    return getattr(_ids, "request_id", None)


class CallIdFilter(logging.Filter):
    """Adds the current ``request_id`` / ``call_id`` to records made inside a unit of work."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(_ids, "request_id", None)
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
            record.call_id = getattr(_ids, "call_id", None)
        return True


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(level: str = "INFO", quiet: tuple[str, ...] = ()) -> None:
    """Configure a process that is not a nameko service (the gateway, scripts)."""
    from .config import logging_config

    config = logging_config(level)
    for name in quiet:
        config["loggers"][name] = {"level": "WARNING"}
    logging.config.dictConfig(config)
