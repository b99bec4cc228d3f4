"""Configuration, only from here: the environment over the registry's defaults over
safe local defaults (the project's own infrastructure ports).

A service's nameko config is built by :func:`service_config` (the launcher and the
integration tests use it); there is no per-service config file. A setting declared in
the registry (``[services.<name>.settings]``) is read from the environment variable of
the same name.
"""
from __future__ import annotations

import os
from typing import Any

from . import registry

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5682/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27217/"
DEFAULT_MAX_WORKERS = 10
DEFAULT_HANDLED_EVENTS_RETENTION_DAYS = 30


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def amqp_uri() -> str:
    return env("AMQP_URI", DEFAULT_AMQP_URI)


def mongodb_url() -> str:
    return env("MONGODB_URL", DEFAULT_MONGODB_URL)


def database_name(service: str) -> str:
    """``crm_<service>`` unless MONGODB_DATABASE overrides it (tests use unique names)."""
    return env("MONGODB_DATABASE") or "crm_" + service.replace("-", "_")


def metrics_port(default: int = 0) -> int:
    """Port for ``/metrics``, ``/healthz``, ``/readyz``; 0 disables the endpoint."""
    return int(env("METRICS_PORT", str(default)) or 0)


def metrics_addr() -> str:
    """Where ``/metrics`` listens: loopback unless ``METRICS_ADDR`` says otherwise."""
    return env("METRICS_ADDR", "127.0.0.1")


def log_level() -> str:
    return env("LOG_LEVEL", "INFO").upper()


def setting(deployable: str, name: str) -> str:
    """One of a deployable's declared settings: the environment, else the registry default."""
    declared = registry.load().deployable(deployable).settings
    if name not in declared:
        raise KeyError(f"{name} is not a setting of {deployable} (declare it in {registry.path()})")
    return env(name, declared[name])


def service_config(name: str, **overrides: Any) -> dict[str, Any]:
    """nameko's config for service ``name``: connections, workers, metrics, logging and
    the service's own settings, each from the environment when set. ``overrides`` win
    (tests pass their own vhost and database)."""
    d = registry.load().service(name)
    config: dict[str, Any] = {
        "AMQP_URI": amqp_uri(),
        "MONGODB_URL": mongodb_url(),
        "MONGODB_DATABASE": database_name(name),
        "METRICS_PORT": metrics_port(d.metrics_port),
        "max_workers": int(env("MAX_WORKERS", str(DEFAULT_MAX_WORKERS))),
        "HANDLED_EVENTS_RETENTION_DAYS": float(env("HANDLED_EVENTS_RETENTION_DAYS",
                                                    str(DEFAULT_HANDLED_EVENTS_RETENTION_DAYS))),
        "serializer": "json",
        # Verifies and signs the internal tokens principals travel in (crm_common.access).
        "CRM_INTERNAL_SECRET": env("CRM_INTERNAL_SECRET"),
        "LOGGING": logging_config(log_level()),
    }
    config.update({key: env(key, default) for key, default in d.settings.items()})
    config.update(overrides)
    return config


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A dictConfig: one JSON object per line on stderr (crm_common.logs), carrying the
    request and call ids of the unit of work (crm_common.logs.CallIdFilter)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"call_id": {"()": "crm_common.logs.CallIdFilter"}},
        "formatters": {"json": {"()": "crm_common.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["call_id"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        # nameko logs every expected (typed) error with a traceback; crm.worker logs one line per call instead
        "loggers": {"nameko.containers": {"level": "ERROR"}, "pika": {"level": "WARNING"},
                    "kombu": {"level": "WARNING"}, "amqp": {"level": "WARNING"}},
    }
