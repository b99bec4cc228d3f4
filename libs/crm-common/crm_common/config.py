"""Settings from the environment, with safe local defaults (the project's own infra ports)."""
from __future__ import annotations

import os

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5682/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27217/"


def amqp_uri() -> str:
    return os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)


def mongodb_url() -> str:
    return os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)


def database_name(service: str) -> str:
    """``crm_<service>`` unless MONGODB_DATABASE overrides it (tests use unique names)."""
    return os.environ.get("MONGODB_DATABASE") or "crm_" + service.replace("-", "_")


def metrics_port(default: int = 0) -> int:
    """Port for ``/metrics``; 0 disables the endpoint."""
    return int(os.environ.get("METRICS_PORT", default))
