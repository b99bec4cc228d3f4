"""Per-worker bookkeeping: RPC/event metrics and the call id for logs."""
from __future__ import annotations

import logging
import time
import weakref

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.timer import Timer

from .. import metrics
from ..errors import CrmError
from . import context

log = logging.getLogger("crm.worker")


class Observe(DependencyProvider):
    """Times every RPC and counts its outcome; sets the call id for log lines.

    Starts the ``/metrics`` endpoint on ``METRICS_PORT`` (config or env; 0 = off).
    Event-handler outcomes are counted by :mod:`crm_common.nameko.handlers`, which
    knows about duplicates and parking.
    """

    def setup(self) -> None:
        self._started: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        port = self.container.config.get("METRICS_PORT")
        metrics.serve(int(port) if port not in (None, "") else 0)

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
        # One line per unit of work, carrying request_id/call_id (see context.py).
        if outcome == "error":
            log.error("%s %s failed after %.1f ms", type(entrypoint).__name__.lower(),
                      entrypoint.method_name, elapsed * 1000, exc_info=exc_info)
        elif not isinstance(entrypoint, Timer) and log.isEnabledFor(logging.INFO):  # timers: too chatty
            log.info("%s %s %s %.1f ms", type(entrypoint).__name__.lower(), entrypoint.method_name,
                     outcome, elapsed * 1000)

    def worker_teardown(self, worker_ctx) -> None:
        context.clear()


