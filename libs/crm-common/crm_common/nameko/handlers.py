"""Idempotent, retried, parkable event handlers.

``@handles("contacts", "contact_created")`` subscribes one queue per service and event
type (SERVICE_POOL, durable: a service that was down catches up; named by the
registry), ``@handles_timeline`` the stream of every service's timeline facts. Each
skips an ``event_id`` it has already
handled (redelivery is a no-op), retries a failing handler a few times, and then
*parks* the delivery in ``parked_events`` where an operator sees it (metric
``crm_events_parked``) and replays it with the ``replay_parked_events`` RPC.
The message is acked only after the work and its ``handled_events`` marker are stored
(an ack lost with a broker outage is logged, not fatal: see entrypoints).

The handler body must itself be safe to run twice (a crash between the work and the
marker redelivers): use derived ids and conditional writes.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import traceback
from datetime import timedelta

from nameko.events import SERVICE_POOL
from pymongo.errors import DuplicateKeyError

from .. import clock, metrics
from ..registry import TIMELINE
from ..timeline import TIMELINE_FACT
from .entrypoints import CrmEventHandler

log = logging.getLogger(__name__)

HANDLED = "handled_events"
PARKED = "parked_events"
RETRY_DELAYS = (0.2, 1.0)
# Duplicates come from broker redeliveries and outbox relays, minutes after the original;
# a month of markers is ample, and without pruning they grow forever (no TTL on FerretDB).
HANDLED_RETENTION_DAYS = 30


def handles(source_service: str, event_type: str, *, idempotent: bool = False):
    """``idempotent``: the handler is harmless to run again by construction (its write is
    keyed by the event id, or ordered by a version or a time it compares), so the
    handled-event marker, a read and a write per delivery, is skipped. Say why where
    you set it."""
    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(self, envelope):
            db = self.store.db
            consumer = f"{self.name}.{fn.__name__}"
            event_id = envelope.get("event_id") if isinstance(envelope, dict) else None
            service = self.name
            if not event_id:
                log.error("dropping malformed %s.%s delivery: %r", source_service, event_type, envelope)
                metrics.EVENTS_HANDLED.labels(service, event_type, "malformed").inc()
                return
            key = f"{consumer}:{event_id}"
            if not idempotent and db[HANDLED].find_one({"_id": key}, {"_id": 1}):
                metrics.EVENTS_HANDLED.labels(service, event_type, "duplicate").inc()
                return
            for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
                try:
                    fn(self, envelope)
                    break
                except Exception as exc:  # noqa: BLE001 - every failure is retried, then parked
                    if delay is None:
                        _park(db, key, consumer, fn.__name__, envelope, exc, attempt)
                        metrics.EVENTS_HANDLED.labels(service, event_type, "parked").inc()
                        metrics.EVENTS_PARKED.labels(service).set(db[PARKED].count_documents({}))
                        return
                    log.warning("%s failed on %s (attempt %d): %s", consumer, event_id, attempt, exc)
                    metrics.EVENTS_HANDLED.labels(service, event_type, "retried").inc()
                    time.sleep(delay)
            if not idempotent:
                try:
                    db[HANDLED].insert_one({"_id": key, "event_type": event_type, "handled_at": clock.now()})
                except DuplicateKeyError:
                    pass  # a replica handled a redelivery concurrently; both were idempotent
            metrics.EVENTS_HANDLED.labels(service, event_type, "ok").inc()

        wrapper.handles_event = (source_service, event_type)
        return CrmEventHandler.decorator(source_service, event_type, handler_type=SERVICE_POOL,
                                         reliable_delivery=True, requeue_on_error=False)(wrapper)

    return decorator


#: ``@handles_timeline``: the handler of every service's timeline facts (crm_common.timeline);
#: storing a fact is an insert keyed by the fact's event id.
handles_timeline = handles(TIMELINE, TIMELINE_FACT, idempotent=True)


def _park(db, key, consumer, method, envelope, exc, attempts) -> None:
    log.error("%s parked %s after %d attempts: %s", consumer, envelope.get("event_id"), attempts, exc)
    # The envelope as JSON text: a hostile payload may hold keys MongoDB refuses ("$where").
    db[PARKED].replace_one({"_id": key}, {
        "_id": key, "consumer": consumer, "method": method, "envelope": json.dumps(envelope, default=str),
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(limit=8),
        "attempts": attempts, "parked_at": clock.now(),
    }, upsert=True)


def replay_parked(service, limit: int = 100) -> int:
    """Run parked deliveries again through their handler (which re-parks on failure)."""
    db = service.store.db
    replayed = 0
    for doc in list(db[PARKED].find({}).limit(limit)):
        db[PARKED].delete_one({"_id": doc["_id"]})
        envelope = doc["envelope"]
        getattr(service, doc["method"])(json.loads(envelope) if isinstance(envelope, str) else envelope)
        replayed += 1
    metrics.EVENTS_PARKED.labels(service.name).set(db[PARKED].count_documents({}))
    return replayed


def prune_handled(db, older_than: timedelta) -> int:
    """Forget the handled-event markers older than ``older_than``; returns how many."""
    return db[HANDLED].delete_many({"handled_at": {"$lt": clock.now() - older_than}}).deleted_count
