"""Events: the typed declarations producers publish, the envelope they travel in, and
the transactional-outbox fields that make publish-after-store safe.

Declaring an event (in the producer's ``events.py``, once)::

    class PointsEarned(Event):
        '''A purchase earned points.'''        # the catalogue's "when"
        type = "points_earned"
        contact_id: Id
        entry: LedgerEntry
        balance: int

        def timeline(self) -> TimelineFact:      # optional: what the contact's timeline shows
            return self.fact(occurred_at=..., summary=...)

Payload changes are additive (new optional fields); ``version`` counts them. Consumers
read ``envelope["data"]`` tolerantly (they ignore what they do not know) and subscribe
declaratively (``@handles("loyalty", "points_earned")``, checked against the registry).
docs/events.md is generated from these declarations (scripts/gen_docs.py).

Envelope: ``event_id, type, version, occurred_at, source, subject, subject_type, data,
correlation_id``. ``subject`` is the id of what the fact is about (``con_…``, ``deal_…``),
``subject_type`` its kind ("contact", "deal", "ticket", ...).

Publish-after-store without transactions: the pending envelopes are written into the
same document as the state change they announce (``_outbox.<event_id>`` plus a
``_outbox_n`` counter, in ONE write). After publishing, each entry is unset. A relay
re-publishes anything left pending (process died between store and publish), and
consumers deduplicate by ``event_id``, so publishing twice is harmless.
FerretDB v1 ignores ``$pull``, hence a map keyed by event id instead of an array.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, ClassVar, Iterable

from pymongo.collection import Collection

from . import clock
from .contracts import Model
from .errors import VersionConflict
from .ids import derived_id, new_id
from .timeline import TIMELINE_FACT, TimelineFact

OUTBOX = "_outbox"
OUTBOX_COUNT = "_outbox_n"


class Event(Model):
    """Base of an event's payload declaration (``data`` of its envelope)."""

    type: ClassVar[str]
    version: ClassVar[int] = 1
    subject_type: ClassVar[str] = "contact"

    def subject(self) -> str:
        """The id the fact is about; by default the payload's ``contact_id``."""
        return getattr(self, "contact_id")

    def timeline(self) -> TimelineFact | None:
        """What the contact's timeline shows for this fact; None for nothing."""
        return None

    def fact(self, **fields: Any) -> TimelineFact:
        """A timeline fact of this event's own kind about its ``contact_id`` (pass
        ``contact_id`` when the payload names its contact otherwise)."""
        fields.setdefault("contact_id", getattr(self, "contact_id", None))
        return TimelineFact(kind=self.type, **fields)


def declared_events(module) -> dict[str, type[Event]]:
    """``{type: class}`` of the Event subclasses a producer's events module declares."""
    return {cls.type: cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event and hasattr(cls, "type")}


def envelope(type: str, *, source: str, subject: str, data: dict[str, Any],
             correlation_id: str | None = None, event_id: str | None = None,
             subject_type: str = "contact", version: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id or new_id("evt"),
        "type": type,
        "version": version,
        "occurred_at": clock.to_iso(clock.now()),
        "source": source,
        "subject": subject,
        "subject_type": subject_type,
        "data": data,
        "correlation_id": correlation_id,
    }


def announce(event: Event, *, source: str, correlation_id: str | None = None,
             event_id: str | None = None) -> list[dict[str, Any]]:
    """The envelopes announcing ``event``: the event itself and, if it has one, its
    timeline fact (a ``timeline_fact`` envelope whose id is derived from the event's)."""
    first = envelope(event.type, source=source, subject=event.subject(), data=event.model_dump(mode="json"),
                     correlation_id=correlation_id, event_id=event_id, subject_type=event.subject_type,
                     version=event.version)
    fact = event.timeline()
    if fact is None:
        return [first]
    second = envelope(TIMELINE_FACT, source=source, subject=fact.contact_id, data=fact.model_dump(mode="json"),
                      correlation_id=correlation_id, event_id=derived_id("evt", "timeline", first["event_id"]))
    return [first, second]


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


def update_versioned(collection: Collection, doc: dict[str, Any], sets: dict[str, Any],
                     staged: Iterable[dict[str, Any]], now, *, kind: str) -> dict[str, Any]:
    """The plain optimistic write of a record with a ``version``: ``sets`` (and
    ``updated_at``) on ``doc`` at the version it was read at, staging ``staged`` in the same
    write. Returns the record after it; VersionConflict (naming the ``kind`` of record and
    the version it is at now) when somebody wrote it first."""
    update = stage_on_update({"$set": {**sets, "updated_at": now}, "$inc": {"version": 1}}, staged)
    if collection.update_one({"_id": doc["_id"], "version": doc["version"]}, update).matched_count != 1:
        current = collection.find_one({"_id": doc["_id"]}, {"version": 1}) or {}
        raise VersionConflict(f"{kind} {doc['_id']} is at version {current.get('version')}, not {doc['version']}: "
                              "it changed meanwhile; reload it and try again",
                              {f"{kind}_id": doc["_id"], "current_version": current.get("version")})
    return {**doc, **sets, "updated_at": now, "version": doc["version"] + 1}


def clear_staged(collection: Collection, doc_id: Any, staged: dict[str, list[str]]) -> None:
    """Drop items staged in a document once done: ``{map_field: [keys]}`` (the outbox's
    ``_outbox``, or a service's own map such as loyalty's ``pending_ledger``), each map with
    its counter ``<map_field>_n``. One update, guarded by the presence of every key, so a
    relay that dropped some of them concurrently can never make a counter go wrong (then
    each key is dropped on its own, guarded the same way)."""
    items = {field: keys for field, keys in staged.items() if keys}
    if not items:
        return
    guard = {f"{field}.{key}": {"$exists": True} for field, keys in items.items() for key in keys}
    update = {"$unset": {path: "" for path in guard},
              "$inc": {f"{field}_n": -len(keys) for field, keys in items.items()}}
    if collection.update_one({"_id": doc_id, **guard}, update).matched_count:
        return
    for field, keys in items.items():
        for key in keys:
            collection.update_one({"_id": doc_id, f"{field}.{key}": {"$exists": True}},
                                  {"$unset": {f"{field}.{key}": ""}, "$inc": {f"{field}_n": -1}})


def clear_outboxes(collection: Collection, doc_ids: list[Any]) -> None:
    """Empty the outboxes of documents whose pending events were all just published (a
    relay publishing them again meanwhile only repeats them: consumers deduplicate)."""
    collection.update_many({"_id": {"$in": doc_ids}, OUTBOX_COUNT: {"$gt": 0}},
                           {"$set": {OUTBOX: {}, OUTBOX_COUNT: 0}})


def publish_staged(collection: Collection, doc_id: Any, events: Iterable[dict[str, Any]],
                   publish: Callable[[dict[str, Any]], None], *, also: dict[str, list[str]] | None = None) -> None:
    """Publish events already stored with their document, then clear them (and ``also``,
    other staged items the caller has done) in one update."""
    events = list(events)
    for e in events:
        publish(e)
    clear_staged(collection, doc_id, {OUTBOX: [e["event_id"] for e in events], **(also or {})})


def relay_pending(collection: Collection, publish: Callable[[dict[str, Any]], None], *,
                  older_than: timedelta = timedelta(seconds=5), limit: int = 500) -> int:
    """Re-publish events left pending longer than ``older_than``; returns how many."""
    cutoff = clock.to_iso(clock.now() - older_than)
    count = 0
    for doc in collection.find({OUTBOX_COUNT: {"$gt": 0}}, {OUTBOX: 1}).limit(limit):
        due = sorted((e for e in (doc.get(OUTBOX) or {}).values() if e["occurred_at"] <= cutoff),
                     key=lambda e: e["occurred_at"])
        for e in due:
            publish(e)
        clear_staged(collection, doc["_id"], {OUTBOX: [e["event_id"] for e in due]})
        count += len(due)
    return count


def strip_outbox(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop(OUTBOX, None)
    doc.pop(OUTBOX_COUNT, None)
    return doc
