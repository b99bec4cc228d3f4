"""Persistence of the loyalty service, and why it is safe without transactions.

Why not "read member, update_one({_id, version: v}, ...)"
---------------------------------------------------------
That compare-and-set is atomic on MongoDB but NOT on FerretDB v1 with the SQLite
backend: an update there reads the document, applies the operators in FerretDB and
writes the whole document back, without isolation. Measured here (20 threads x 30
attempts on one document): the version-guarded update reported 332 successes for 44
real increments, and even a plain ``$inc`` kept 44 of 600. Two redemptions could both
"win". What IS atomic on both databases is inserting a document whose ``_id`` exists
already (unique key -> DuplicateKeyError), so every arbitration below is an insert.

The member version log (``member_versions``)
--------------------------------------------
A member's points state (:class:`loyalty.domain.MemberState`: balance, tier, lots,
recent redemption request ids, status) lives in an append-only chain of documents
``_id = "<contact_id>:<version:012d>"``. A mutation reads the newest version v, computes
the new state with the pure functions of ``domain.py`` and INSERTS version v+1. Two
writers racing from v both try to insert v+1: exactly one succeeds, the other gets
DuplicateKeyError, re-reads and recomputes (bounded retries with a small jittered
sleep). So balance never goes below zero and a purchase never earns twice.

Version v+1 is written in ONE insert together with (a) the ledger entries it appends
(``pending_ledger``, keyed by their deterministic ids) and (b) the events announcing
it (the crm_common outbox fields). After the insert, in this order:
1. ledger entries are inserted into ``ledger`` (insert-if-absent: ``_id`` is the entry
   id, so a second copy is a DuplicateKeyError, ignored) and unset from the version;
2. the ``members`` head document (a cache: version, tier, balance, due_at) is refreshed;
3. the service publishes the staged events and unsets them (crm_common outbox).
A crash after the insert leaves pending ledger entries / events on the version
document: the ``materialize_ledger`` timer inserts the former, the outbox relay
re-publishes the latter (consumers deduplicate by event id). A crash before the insert
leaves nothing. Later writes to a version document only REMOVE fields (pending
entries, events, the state of superseded versions); a lost update can at worst
resurrect a removed field, which makes a ledger insert or an event repeat — both
idempotent.

The head cache may lag (a lost update, a crash before step 2): readers start at the
cached version and walk forward by ``_id`` until the next version does not exist, so
they always see the newest state; a lagging cache only costs a lookup. ``due_at`` in
the cache never lies late (it only grows along the chain, and every member has a
heartbeat), so the expiry timer eventually visits and repairs every member.

Superseded versions are slimmed (their ``state`` unset, the id kept: an id must never
be reusable). Idempotency that outlives the member document: an earn entry's id is
derived from (source, source_ref) and a redemption's from (contact, request_id), so
the ``ledger`` collection answers "was this applied?" by ``_id`` forever.

Personal data (the read model of contacts): ``profiles`` (display_name, contact
version, last loyalty consent) — never copied into versions or events. Erasure inserts
a tombstone into ``erased_contacts`` (atomic) and then scrubs the profile; every other
profile write re-checks the tombstone afterwards, so a racing update cannot resurrect
an erased name.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.errors import VersionConflict
from crm_common.mongo import update_if

from . import domain

MAX_ATTEMPTS = 50
PENDING = "pending_ledger"
PENDING_COUNT = "pending_ledger_n"


def version_id(contact_id: str, version: int) -> str:
    return f"{contact_id}:{version:012d}"


@dataclass
class Head:
    contact_id: str
    version: int
    state: domain.MemberState
    cached_version: int


@dataclass
class Committed:
    change: domain.Change
    version: int
    doc_id: str | None            # the version document holding the staged events
    staged: list[dict[str, Any]]


class LoyaltyStore:
    def __init__(self, db: Database):
        self.db = db
        self.members = db.members
        self.versions = db.member_versions
        self.ledger = db.ledger
        self.profiles = db.profiles
        self.erasures = db.erased_contacts

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db.member_versions.create_index([("contact_id", ASCENDING), ("version", DESCENDING)], unique=True)
        db.member_versions.create_index(ev.OUTBOX_COUNT)
        db.member_versions.create_index(PENDING_COUNT)
        db.ledger.create_index([("contact_id", ASCENDING), ("seq", DESCENDING)], unique=True)
        db.members.create_index("due_at")
        db.members.create_index("tier")

    # -- reading the chain ----------------------------------------------------------
    def head(self, contact_id: str) -> Head | None:
        cache = self.members.find_one({"_id": contact_id}, {"version": 1})
        cached = cache["version"] if cache else 0
        version = self._walk(contact_id, cached)
        if version == 0:
            return None
        doc = self.versions.find_one({"_id": version_id(contact_id, version)})
        if doc is None or "state" not in doc:  # cache pointed into slimmed history: find the tip
            tip = list(self.versions.find({"contact_id": contact_id, "state": {"$exists": True}})
                       .sort("version", DESCENDING).limit(1))
            version = self._walk(contact_id, tip[0]["version"]) if tip else version
            doc = self.versions.find_one({"_id": version_id(contact_id, version)})
        return Head(contact_id, version, domain.MemberState.from_doc(doc["state"]), cached)

    def _walk(self, contact_id: str, version: int) -> int:
        while self.versions.find_one({"_id": version_id(contact_id, version + 1)}, {"_id": 1}):
            version += 1
        return version

    # -- writing the chain ----------------------------------------------------------
    def mutate(self, contact_id: str, op: Callable[[Head | None], domain.Change | None],
               make_events: Callable[[domain.Change, int], list[dict[str, Any]]],
               now: Callable[[], datetime] = clock.now) -> Committed:
        """Read the newest version, apply ``op`` (pure; may raise), insert the next version.
        Retries on a lost race. ``op`` returning None or a no-op Change writes nothing."""
        for attempt in range(MAX_ATTEMPTS):
            head = self.head(contact_id)
            t = now()
            change = op(head)
            if change is None or change.is_noop:
                if head is not None:
                    self._refresh_head(contact_id, head.version, change.state if change else head.state, t,
                                       force=False)
                return Committed(change, head.version if head else 0, None, [])
            version = (head.version if head else 0) + 1
            staged = make_events(change, version)
            doc_id = version_id(contact_id, version)
            doc = {"_id": doc_id, "contact_id": contact_id, "version": version, "created_at": t,
                   "state": change.state.to_doc(),
                   PENDING: {e["_id"]: e for e in change.entries}, PENDING_COUNT: len(change.entries)}
            try:
                self.versions.insert_one(ev.stage_on_insert(doc, staged))
            except DuplicateKeyError:
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
                continue
            self._materialize(doc_id, change.entries)
            self._refresh_head(contact_id, version, change.state, t, force=True)
            if version > 2:
                self.versions.update_one({"_id": version_id(contact_id, version - 2)},
                                         {"$unset": {"state": ""}})
            return Committed(change, version, doc_id, staged)
        raise VersionConflict(f"member {contact_id} is too busy, retry", {"contact_id": contact_id})

    def _materialize(self, doc_id: str, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            try:
                self.ledger.insert_one(entry)
            except DuplicateKeyError:
                pass
            update_if(self.versions, doc_id, {f"{PENDING}.{entry['_id']}": {"$exists": True}},
                      {"$unset": {f"{PENDING}.{entry['_id']}": ""}, "$inc": {PENDING_COUNT: -1}})

    def materialize_leftovers(self, older_than: timedelta = timedelta(seconds=5), limit: int = 500) -> int:
        """Ledger entries left on a version by a crash between the insert and step 1."""
        cutoff = clock.now() - older_than
        n = 0
        for doc in self.versions.find({PENDING_COUNT: {"$gt": 0}}, {PENDING: 1, "created_at": 1}).limit(limit):
            if doc["created_at"] <= cutoff:
                entries = list((doc.get(PENDING) or {}).values())
                self._materialize(doc["_id"], entries)
                n += len(entries)
        return n

    def _refresh_head(self, contact_id: str, version: int, state: domain.MemberState, t: datetime,
                      *, force: bool) -> None:
        summary = {"version": version, "member_id": state.member_id, "status": state.status,
                   "tier": state.tier, "balance": state.balance, "enrolled_at": state.enrolled_at,
                   "due_at": domain.next_due(state, t), "updated_at": t}
        # no-op when the head is already at a newer version
        update_if(self.members, contact_id, {"version": {"$lte": version}},
                  {"$set": summary, "$setOnInsert": {"created_at": t}}, upsert=True)

    # -- queries ----------------------------------------------------------------------
    def due_members(self, now: datetime, limit: int = 500) -> list[str]:
        return [d["_id"] for d in self.members.find({"due_at": {"$lte": now}}, {"_id": 1}).limit(limit)]

    def ledger_entry(self, entry_id: str) -> dict[str, Any] | None:
        return self.ledger.find_one({"_id": entry_id})

    def find_entry(self, contact_id: str, entry_id: str, wait: float = 2.0) -> dict[str, Any] | None:
        """An entry already applied: from the ledger, or still pending on its version."""
        deadline = time.monotonic() + wait
        while True:
            entry = self.ledger_entry(entry_id)
            if entry is not None:
                return entry
            doc = self.versions.find_one({"contact_id": contact_id, f"{PENDING}.{entry_id}": {"$exists": True}},
                                         {f"{PENDING}.{entry_id}": 1})
            if doc is not None:
                return doc[PENDING][entry_id]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def list_ledger(self, contact_id: str, page_size: int, before_seq: int | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"contact_id": contact_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        return list(self.ledger.find(query).sort("seq", DESCENDING).limit(page_size))

    def member_stats(self) -> dict[str, dict[str, int]]:
        """``{tier: {"members", "points"}}``. One accumulator per ``$group``: FerretDB v1
        returns 0 for every ``$sum`` after the first one in the same stage."""
        stats: dict[str, dict[str, int]] = {}
        for field, expr in (("members", 1), ("points", "$balance")):
            for row in self.members.aggregate([{"$group": {"_id": "$tier", "n": {"$sum": expr}}}]):
                stats.setdefault(row["_id"], {"members": 0, "points": 0})[field] = row["n"]
        return stats

    # -- the read model of contacts (personal data) -------------------------------------
    def is_erased(self, contact_id: str) -> bool:
        return self.erasures.find_one({"_id": contact_id}, {"_id": 1}) is not None

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        return self.profiles.find_one({"_id": contact_id})

    def save_contact(self, contact: dict[str, Any]) -> None:
        """From contact_created / contact_updated: keep display_name, newest contact version wins."""
        contact_id, version = contact["id"], contact.get("version")
        current = self.profile(contact_id)
        if (current is not None and isinstance(version, int)
                and isinstance(current.get("contact_version"), int) and current["contact_version"] >= version):
            return
        fields: dict[str, Any] = {"display_name": contact.get("display_name"), "updated_at": clock.now()}
        if isinstance(version, int):
            fields["contact_version"] = version
        self._write_profile(contact_id, fields)

    def note_consent(self, contact_id: str, granted: bool, at: datetime, display_name: str | None) -> bool:
        """Record a loyalty consent decision; False if a newer decision is known already."""
        current = self.profile(contact_id) or {}
        last = current.get("loyalty_consent_at")
        if last is not None and at < last:
            return False
        fields: dict[str, Any] = {"loyalty_consent": granted, "loyalty_consent_at": at, "updated_at": clock.now()}
        if "display_name" not in current and display_name is not None:
            fields["display_name"] = display_name
        self._write_profile(contact_id, fields)
        return True

    def _write_profile(self, contact_id: str, fields: dict[str, Any]) -> None:
        now = clock.now()
        self.profiles.update_one({"_id": contact_id}, {"$set": fields, "$setOnInsert": {"created_at": now}},
                                 upsert=True)
        if self.is_erased(contact_id):  # write-then-check: an erasure racing with us wins
            self._scrub(contact_id)

    def erase(self, contact_id: str) -> None:
        now = clock.now()
        try:
            self.erasures.insert_one({"_id": contact_id, "erased_at": now})
        except DuplicateKeyError:
            pass
        self._scrub(contact_id)

    def _scrub(self, contact_id: str) -> None:
        now = clock.now()
        self.profiles.update_one({"_id": contact_id},
                                 {"$set": {"display_name": None, "erased": True, "updated_at": now},
                                  "$setOnInsert": {"created_at": now}}, upsert=True)
