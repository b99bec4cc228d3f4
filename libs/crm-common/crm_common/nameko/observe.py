"""Per-worker bookkeeping: RPC/event metrics and the call id for logs."""
from __future__ import annotations

import logging
import time
import weakref

from kombu import Connection
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer

from .. import metrics, probes
from ..errors import CrmError
from . import context

log = logging.getLogger("crm.worker")

PROBE_TIMEOUT_SECONDS = 2


def broker_check(amqp_uri: str):
    """Readiness: a fresh AMQP connection opens (and is closed again) within the timeout."""
    def check():
        with Connection(amqp_uri, connect_timeout=PROBE_TIMEOUT_SECONDS) as conn:
            conn.connect()
    return check


class Observe(DependencyProvider):
    """Times every RPC and counts its outcome; sets the call id for log lines.

    Starts the ops endpoint (``/metrics``, ``/healthz``, ``/readyz``, see
    :mod:`crm_common.probes`) on ``METRICS_PORT`` (config or env; 0 = off) and
    registers the readiness check that the broker is reachable.
    Event-handler outcomes are counted by :mod:`crm_common.nameko.handlers`, which
    knows about duplicates and parking.
    """

    def setup(self) -> None:
        self._started: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        port = self.container.config.get("METRICS_PORT")
        self._check_name = f"{self.container.service_name}.broker"
        amqp_uri = self.container.config.get(AMQP_URI_CONFIG_KEY)
        if amqp_uri:
            probes.add_check(self._check_name, broker_check(amqp_uri))
        probes.serve(int(port) if port not in (None, "") else 0)
        self._declare_series()

    def _declare_series(self) -> None:
        """Create this service's event series at zero, so ``increase()`` in an alert
        sees the first parked delivery after a (re)start, not only the second."""
        service = self.container.service_name
        metrics.EVENTS_RELAYED.labels(service)
        for entrypoint in self.container.entrypoints:
            method = getattr(self.container.service_cls, entrypoint.method_name, None)
            handled = getattr(method, "handles_event", None)
            if handled:
                for outcome in ("ok", "parked"):
                    metrics.EVENTS_HANDLED.labels(service, handled[1], outcome)

    def stop(self) -> None:
        probes.remove_check(self._check_name)

    def kill(self) -> None:
        self.stop()

    def worker_setup(self, worker_ctx) -> None:
        context.set_current(worker_ctx)
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        if exc_info is None:
            outcome = "ok"
        elif isinstance(exc_info[1], CrmError):
            outcome = exc_info[1].code.lower()
        else:
            outcome = "error"
        if isinstance(entrypoint, Rpc):
            service, method = self.container.service_name, entrypoint.method_name
            metrics.RPC_REQUESTS.labels(service, method, outcome).inc()
            metrics.RPC_DURATION.labels(service, method).observe(elapsed)
        # One line per unit of work, carrying request_id/call_id (crm_common.logs).
        kind = "rpc" if isinstance(entrypoint, Rpc) else "timer" if isinstance(entrypoint, Timer) else "event"
        fields = {"entrypoint": kind, "method": entrypoint.method_name, "outcome": outcome,
                  "duration_ms": round(elapsed * 1000, 1)}
        if outcome == "error":
            log.error("%s %s failed", kind, entrypoint.method_name, exc_info=exc_info, extra=fields)
        elif kind != "timer" and log.isEnabledFor(logging.INFO):  # timers: too chatty
            log.info("%s %s %s", kind, entrypoint.method_name, outcome, extra=fields)

    def worker_teardown(self, worker_ctx) -> None:
        context.clear()


