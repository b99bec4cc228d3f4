"""The event envelope every service publishes, and the transactional-outbox fields.

Envelope: ``event_id, type, occurred_at, source, subject, data, correlation_id``.

Publish-after-store without transactions: the pending envelope is written into the
same document as the state change it announces (``_outbox.<event_id>`` plus a
``_outbox_n`` counter, in ONE write). After publishing, the entry is unset. A relay
re-publishes anything left pending (process died between store and publish), and
consumers deduplicate by ``event_id``, so publishing twice is harmless.
FerretDB v1 ignores ``$pull``, hence a map keyed by event id instead of an array.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterable

from pymongo.collection import Collection

from . import clock
from .ids import new_id
from .mongo import update_if

OUTBOX = "_outbox"
OUTBOX_COUNT = "_outbox_n"


def envelope(type: str, *, source: str, subject: str, data: dict[str, Any],
             correlation_id: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or new_id("evt"),
        "type": type,
        "occurred_at": clock.to_iso(clock.now()),
        "source": source,
        "subject": subject,
        "data": data,
        "correlation_id": correlation_id,
    }


def stage_on_insert(doc: dict[str, Any], events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return ``doc`` carrying ``events`` as pending, for an insert."""
    events = list(events)
    doc = dict(doc)
    doc[OUTBOX] = {e["event_id"]: e for e in events}
    doc[OUTBOX_COUNT] = len(events)
    return doc


def stage_on_update(update: dict[str, Any], events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return a copy of a Mongo update document that also stages ``events``."""
    events = list(events)
    update = {op: dict(fields) for op, fields in update.items()}
    sets = update.setdefault("$set", {})
    for e in events:
        sets[f"{OUTBOX}.{e['event_id']}"] = e
    if events:
        incs = update.setdefault("$inc", {})
        incs[OUTBOX_COUNT] = incs.get(OUTBOX_COUNT, 0) + len(events)
    return update


def mark_published(collection: Collection, doc_id: Any, event_id: str) -> bool:
    """Drop one pending event; conditional, so two relays never double-decrement."""
    return update_if(collection, doc_id, {f"{OUTBOX}.{event_id}": {"$exists": True}},
                     {"$unset": {f"{OUTBOX}.{event_id}": ""}, "$inc": {OUTBOX_COUNT: -1}})


def publish_staged(collection: Collection, doc_id: Any, events: Iterable[dict[str, Any]],
                   publish: Callable[[dict[str, Any]], None]) -> None:
    """Publish events already stored with their document, then mark them sent."""
    for e in events:
        publish(e)
        mark_published(collection, doc_id, e["event_id"])


def relay_pending(collection: Collection, publish: Callable[[dict[str, Any]], None], *,
                  older_than: timedelta = timedelta(seconds=5), limit: int = 500) -> int:
    """Re-publish events left pending longer than ``older_than``; returns how many."""
    cutoff = clock.to_iso(clock.now() - older_than)
    count = 0
    for doc in collection.find({OUTBOX_COUNT: {"$gt": 0}}, {OUTBOX: 1}).limit(limit):
        pending = sorted((doc.get(OUTBOX) or {}).values(), key=lambda e: e["occurred_at"])
        for e in pending:
            if e["occurred_at"] <= cutoff:
                publish(e)
                mark_published(collection, doc["_id"], e["event_id"])
                count += 1
    return count


def strip_outbox(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop(OUTBOX, None)
    doc.pop(OUTBOX_COUNT, None)
    return doc
