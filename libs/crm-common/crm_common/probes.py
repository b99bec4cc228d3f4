"""The ops HTTP endpoint every CRM process exposes on its metrics port.

- ``/metrics``  Prometheus exposition (prometheus-client's own WSGI app).
- ``/healthz``  liveness: 200 while the process can answer at all. Restarting a pod
                because the broker is down would not bring the broker back, so
                liveness checks nothing else.
- ``/readyz``   readiness: 200 when every registered check passes, else 503 with one
                line per failing check. Services register "broker" and "database"
                checks, so a pod that cannot reach either leaves the load balancer
                and the rollout waits for it.

Checks are plain callables that raise (or return a non-empty reason) when unhealthy;
each runs with its own short timeout so a probe never outlives Kubernetes' patience.
"""
from __future__ import annotations

import threading
from typing import Callable

from prometheus_client import make_wsgi_app

from . import config
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from wsgiref.simple_server import make_server

Check = Callable[[], "str | None"]

_checks: dict[str, Check] = {}
_lock = threading.Lock()
_servers: dict[int, ThreadingWSGIServer] = {}


def add_check(name: str, check: Check) -> None:
    """Register (or replace) a readiness check under ``name``."""
    with _lock:
        _checks[name] = check


def remove_check(name: str) -> None:
    with _lock:
        _checks.pop(name, None)


def check_names() -> list[str]:
    with _lock:
        return sorted(_checks)


def failing_checks() -> list[str]:
    """``"name: reason"`` for every check that does not pass right now."""
    with _lock:
        checks = list(_checks.items())
    problems = []
    for name, check in checks:
        try:
            reason = check()
        except Exception as exc:  # a probe reports; it never crashes the endpoint
            reason = f"{type(exc).__name__}: {exc}"
        if reason:
            problems.append(f"{name}: {reason}")
    return problems


def _app(environ, start_response, _metrics=make_wsgi_app()):
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        return _text(start_response, "200 OK", "ok\n")
    if path == "/readyz":
        problems = failing_checks()
        if problems:
            return _text(start_response, "503 Service Unavailable", "\n".join(problems) + "\n")
        return _text(start_response, "200 OK", "ready\n")
    if path == "/metrics":
        return _metrics(environ, start_response)
    return _text(start_response, "404 Not Found", "only /metrics, /healthz and /readyz here\n")


def _text(start_response, status: str, body: str):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]


def serve(port: int, addr: str | None = None) -> None:
    """Start the endpoint on ``port`` once per process (0 = disabled), on ``METRICS_ADDR``
    (loopback unless configured: a cluster's pods set 0.0.0.0 for Prometheus)."""
    addr = addr or config.metrics_addr()
    with _lock:
        if not port or port in _servers:
            return
        httpd = make_server(addr, port, _app, ThreadingWSGIServer, handler_class=_SilentHandler)
        _servers[port] = httpd
    threading.Thread(target=httpd.serve_forever, name=f"probes:{port}", daemon=True).start()
