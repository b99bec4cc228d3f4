"""Persistence of segments, and the per-process cache of their compiled rules.

``segments`` (``_id`` = ``seg_...``): name, description, kind, the rule as JSON text, state
(active / archived), ``version``, and the work that keeps its memberships right beside
the events: ``fill`` (``pending`` after a create, a rule change or an archive, until a
full evaluation has reconciled every contact; taken by one replica with a lease) and
``checked_at`` (a segment whose rule depends on time alone is re-checked every
MARKETING_RECHECK_MINUTES).

``list_members`` (``_id`` = ``<segment>:<contact>``): who was added to a static list, the
record a rebuild of the audience restores static memberships from.

``meta.segments`` holds ``rev``, moved by every change of any segment. Each process keeps
the compiled active segments (``SegmentCache``) and reloads them when ``rev`` moved (an
event handler reads ``rev`` before its evaluation only if the process has not seen it
within the last second; fills and RPCs always do). A
handler re-reads ``rev`` after its write; when a segment changed meanwhile it evaluates
again, so a contact written while a segment was being created is never missed by both
the handler and the segment's full evaluation.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.errors import AlreadyExists, NotFound

from . import rules
from .evaluate import compile_rule
from .membership import ACTIVE, DYNAMIC, SegmentDef

SEGMENTS = "segments"
LISTS = "list_members"
META = "meta"
REV = "segments"


class SegmentStore:
    def __init__(self, db: Database):
        self.db = db
        self.segments = db[SEGMENTS]
        self.lists = db[LISTS]
        self.meta = db[META]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[SEGMENTS].create_index("fill")             # the filler: {fill: "pending"}
        db[SEGMENTS].create_index("name_key", unique=True)
        db[SEGMENTS].create_index("time_relative")
        db[SEGMENTS].create_index(ev.OUTBOX_COUNT)
        db[LISTS].create_index("segment_id")
        db[LISTS].create_index("contact_id")          # a data subject's export

    def rev(self) -> int:
        doc = self.meta.find_one({"_id": REV}, {"rev": 1})
        return int((doc or {}).get("rev") or 0)

    def bump(self) -> None:
        self.meta.update_one({"_id": REV}, {"$inc": {"rev": 1}}, upsert=True)

    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            self.segments.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            existing = self.segments.find_one({"name_key": doc["name_key"]}, {"_id": 1})
            if existing and existing["_id"] == doc["_id"]:
                return self.get(doc["_id"])   # the same create, replayed
            raise AlreadyExists(f"a segment named {doc['name']!r} exists already",
                                {"existing_id": (existing or {}).get("_id", "")}) from None
        self.bump()
        return doc

    def get(self, segment_id: str) -> dict[str, Any]:
        doc = self.segments.find_one({"_id": segment_id})
        if doc is None:
            raise NotFound(f"segment {segment_id} not found", {"segment_id": segment_id})
        return doc

    def update(self, segment_id: str, version: int, sets: dict[str, Any], staged: list[dict[str, Any]]
               ) -> dict[str, Any]:
        try:
            ev.update_versioned(self.segments, {"_id": segment_id, "version": version}, sets, staged, clock.now(),
                                kind="segment")
        except DuplicateKeyError:
            raise AlreadyExists(f"a segment named {sets.get('name')!r} exists already") from None
        self.bump()
        return self.get(segment_id)

    def page(self, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {"_id": {"$gt": after_id}} if after_id else {}
        return list(self.segments.find(query).sort("_id", 1).limit(limit))

    def all(self) -> list[dict[str, Any]]:
        return list(self.segments.find({}))

    # -- filling (full evaluations) -------------------------------------------------------
    def take_fill(self, owner: str, lease: timedelta, now: datetime) -> dict[str, Any] | None:
        """A segment whose memberships must be reconciled, leased to ``owner`` (one replica
        at a time; a lease left by a crashed replica expires)."""
        for doc in self.segments.find({"fill": "pending"}, {"_id": 1, "fill_lease": 1, "version": 1}).limit(20):
            lease_until = doc.get("fill_lease")
            if lease_until is not None and lease_until > now:
                continue
            taken = self.segments.update_one(
                {"_id": doc["_id"], "fill": "pending", "fill_lease": lease_until},
                {"$set": {"fill_lease": now + lease, "fill_owner": owner}})
            if taken.modified_count == 1:
                return self.segments.find_one({"_id": doc["_id"]})
        return None

    def filled(self, segment_id: str, version: int, owner: str, members: int, took: float, now: datetime) -> bool:
        """Done, unless the segment changed while it was being filled (then it is pending
        again for the new version, and the lease is released)."""
        done = self.segments.update_one(
            {"_id": segment_id, "version": version, "fill_owner": owner},
            {"$set": {"fill": "done", "fill_lease": None, "members": members, "filled_at": now, "checked_at": now,
                      "fill_seconds": round(took, 3), "recheck": False}})
        if done.modified_count != 1:
            self.segments.update_one({"_id": segment_id, "fill_owner": owner}, {"$set": {"fill_lease": None}})
        return done.modified_count == 1

    def renew_fill(self, segment_id: str, owner: str, lease: timedelta, now: datetime) -> None:
        self.segments.update_one({"_id": segment_id, "fill_owner": owner}, {"$set": {"fill_lease": now + lease}})

    def set_members(self, counts: dict[str, int]) -> None:
        for segment_id, members in counts.items():
            self.segments.update_one({"_id": segment_id}, {"$set": {"members": members}})

    # -- static lists -------------------------------------------------------------------------
    def add_to_list(self, segment_id: str, contact_id: str, now: datetime) -> bool:
        try:
            self.lists.insert_one({"_id": f"{segment_id}:{contact_id}", "segment_id": segment_id,
                                   "contact_id": contact_id, "added_at": now})
            return True
        except DuplicateKeyError:
            return False

    def remove_from_list(self, segment_id: str, contact_id: str) -> bool:
        return self.lists.delete_one({"_id": f"{segment_id}:{contact_id}"}).deleted_count == 1

    def in_list(self, segment_id: str, contact_id: str) -> bool:
        return self.lists.find_one({"_id": f"{segment_id}:{contact_id}"}, {"_id": 1}) is not None

    def due_recheck(self, now: datetime, every: timedelta) -> list[dict[str, Any]]:
        """Active dynamic segments whose rule depends on time alone, not checked for ``every``."""
        return [d for d in self.segments.find({"time_relative": True})
                if d.get("state") == ACTIVE and d.get("fill") == "done"
                and (d.get("checked_at") or now - every) <= now - every]

    def recheck(self, segment_id: str, checked_at: datetime | None, now: datetime) -> bool:
        """Claim a periodic re-check (so two replicas do not both run it)."""
        return self.segments.update_one({"_id": segment_id, "checked_at": checked_at, "fill": "done"},
                                        {"$set": {"fill": "pending", "fill_lease": None, "checked_at": now,
                                                  "recheck": True}}).modified_count == 1


def rule_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A segment's rule (stored as JSON text: a rule is compared and replaced whole)."""
    return json.loads(doc["rule"]) if doc.get("rule") else None


def definition(doc: dict[str, Any]) -> SegmentDef:
    rule = rule_of(doc)
    compiled = compile_rule(rules.parse(rule)) if doc["kind"] == DYNAMIC and rule else None
    return SegmentDef(doc["_id"], doc["name"], doc["kind"], doc.get("state", ACTIVE), compiled)


class SegmentCache:
    """The compiled segments of one database, per process (shared by its workers),
    reloaded when ``meta.segments.rev`` moved.

    An event handler may take definitions this process confirmed within the last
    ``FRESH_SECONDS`` without reading ``rev`` first (audience.writes, ``recent_defs``):
    under load the read each handler makes after its write (:meth:`confirm`) keeps them
    fresh, so a fact costs one ``rev`` read, not two. That is safe for the reason the read
    after the write exists at all: a write made while a segment changed is evaluated
    again, and a fact that wrote nothing left the contact as the segment's full
    evaluation reads it."""

    FRESH_SECONDS = 1.0
    _by_db: dict[str, "SegmentCache"] = {}
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.rev = -1
        self.defs: dict[str, SegmentDef] = {}
        self.seen_at = float("-inf")   # monotonic time ``rev`` was last read as the cached one

    @classmethod
    def of(cls, store: SegmentStore) -> "SegmentCache":
        with cls._guard:
            return cls._by_db.setdefault(store.db.name, cls())

    def current(self, store: SegmentStore, *, fresh: bool = False) -> tuple[int, dict[str, SegmentDef]]:
        """The definitions and their ``rev``; ``fresh``: read ``rev`` whatever its age."""
        if fresh or time.monotonic() - self.seen_at > self.FRESH_SECONDS:
            self.confirm(store, store.rev())
        return self.rev, self.defs

    def confirm(self, store: SegmentStore, rev: int) -> int:
        """``rev`` was just read: reload the definitions if it moved. Returns it."""
        now = time.monotonic()
        if rev != self.rev:
            defs = {d["_id"]: definition(d) for d in store.all()}
            self.rev, self.defs = rev, defs
        self.seen_at = now
        return rev
