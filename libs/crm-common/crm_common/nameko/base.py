"""What every CRM nameko service has: metrics and call ids, the event outbox and its
relay, ``ping``, ``echo``, and replay of parked event deliveries."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer

from .. import metrics
from ..errors import CrmError
from .entrypoints import CrmRpc
from .handlers import HANDLED_RETENTION_DAYS, PARKED, prune_handled, replay_parked
from .observe import Observe
from .outbox import EventOutbox

log = logging.getLogger(__name__)

RELAY_INTERVAL_SECONDS = 5
PRUNE_INTERVAL_SECONDS = 3600
MAX_ECHO_DELAY = 5.0


def rpc(fn=None, **kwargs):
    """nameko's ``@rpc`` with our typed errors declared expected: a NotFound is the
    caller's business, logged as a warning without a traceback, not as a crash.
    Replies go through :class:`~crm_common.nameko.entrypoints.CrmRpc`, which survives
    a broker outage."""
    kwargs.setdefault("expected_exceptions", CrmError)
    decorate = CrmRpc.decorator(**kwargs)
    return decorate(fn) if fn is not None else decorate


class CrmService:
    """Base class. Subclasses set ``name``, a ``store = MongoStore(TheirStore)`` whose
    store exposes ``db``, and ``OUTBOX_COLLECTIONS``: the collections whose documents
    stage events (see crm_common.events)."""

    name: str
    OUTBOX_COLLECTIONS: tuple[str, ...] = ()

    config = Config()
    observe = Observe()
    outbox = EventOutbox()

    @rpc
    def ping(self):
        """Readiness: answering proves the broker and the worker pool; the database
        ping proves the store (raises when it is unreachable)."""
        self.store.db.command("ping")
        return {"service": self.name, "ok": True}

    @rpc
    def echo(self, payload=None, delay=0.0):
        """A no-op round trip: touches nothing, returns ``payload``. The floor the
        benchmark measures the full gateway → broker → service hop against. ``delay``
        (seconds, at most MAX_ECHO_DELAY) holds the worker that long first: a call
        that is provably in flight, for shutdown drills."""
        if delay:
            time.sleep(min(float(delay), MAX_ECHO_DELAY))
        return payload

    @rpc
    def replay_parked_events(self, limit=100):
        return {"replayed": replay_parked(self, limit)}

    @timer(interval=RELAY_INTERVAL_SECONDS)
    def relay_outbox(self):
        # Safe with several replicas: a doubly relayed event is deduplicated by consumers.
        for name in self.OUTBOX_COLLECTIONS:
            self.outbox.relay(self.store.db[name])
        # Refreshed here too, so the gauge (and its alert) survives a restart.
        metrics.EVENTS_PARKED.labels(self.name).set(self.store.db[PARKED].count_documents({}))

    @timer(interval=PRUNE_INTERVAL_SECONDS)
    def prune_handled_events(self):
        """Forget handled-event markers older than HANDLED_EVENTS_RETENTION_DAYS (30)."""
        days = float(self.config.get("HANDLED_EVENTS_RETENTION_DAYS") or HANDLED_RETENTION_DAYS)
        pruned = prune_handled(self.store.db, timedelta(days=days))
        if pruned:
            log.info("forgot %d handled-event markers older than %g days", pruned, days)
