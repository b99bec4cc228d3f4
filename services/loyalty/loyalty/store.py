"""Persistence of the loyalty service, and why it is safe without transactions.

One document per member
-----------------------
``members._id`` is the contact id; the document holds the member's points state
(:class:`loyalty.domain.MemberState`: balance, tier, lots, recent redemption keys,
status), a ``version``, ``due_at`` (when the expiry timer must look at it again), and a
copy of the contact's display name (the read model, kept here so a member answers from
one read). Every change is the plain MongoDB idiom: read the member at version v,
compute the new state with the pure functions of ``domain.py``, then ONE
``update_one({_id, version: v}, ...)``. Single-document writes are atomic (MongoDB;
our FerretDB build, tools/ferretdb), so of two writers racing from v exactly one
matches; the other re-reads and recomputes (crm_common.retry). A balance never goes
below zero and a purchase never earns twice for one member.

That one write also stages, under ``pending_ledger.<entry id>``, each ledger entry the
change appends together with the events announcing it (``points_earned`` and its
timeline fact); events not about an entry (``member_enrolled``, ``tier_changed``) go to
the member's own outbox (crm_common.events). Then:

1. the entries are inserted into ``ledger`` (``_id`` = entry id, unique ``(contact_id,
   seq)``), each carrying its events in its own outbox: the ledger is an outbox
   collection;
2. the service publishes them and clears each entry's outbox (crm_common.events);
3. the staged copies on the member are dropped by the member's next write, or by the
   relay timer once they are a few seconds old (it inserts them first: after a crash
   between the member write and step 1 that is what repairs the ledger; a second insert
   of an entry is a DuplicateKeyError, ignored).

A crash before the member write leaves nothing. An earn is four database commands on
its way: read the member, write it, insert the ledger entry, clear the entry's outbox;
the member's collection is written once.

Idempotency that outlives the member document
---------------------------------------------
An earn entry's id is derived from ``(source, source_ref)`` and a redemption's from
``(contact, idempotency key)``, so the ledger answers "was this applied?" by ``_id``
forever. The member state remembers recent ones (lots for a year, the last 200
redemption keys), which answers the common retry without touching the ledger. A
purchase id that already earned for *another* contact (or for this one longer ago than
the state remembers) is caught by the ledger insert: the change is then voided with one
more guarded write (``domain.void``) before anything is published.

Refunds that may come before their payment
-------------------------------------------
Sales' ``order_refunded`` and ``order_paid`` travel on separate queues, so a refund may be
handled before the payment it undoes. ``refunded_orders`` (``_id`` = order id) remembers
every refund, written BEFORE the refund takes the points back; the payment's handler
reads it AFTER earning. Whichever of the two reads second sees the other's write (the
lot, or the refund), so the order's points are always taken back; the reversal itself
happens once (the lot is marked in the same guarded write; its entry id derives from the
order). Remembered for the retention of lots (``Policy.retention``), then forgotten.

Personal data (the read model of contacts)
------------------------------------------
``profiles``: display name, contact version and last loyalty consent of every contact we
heard of, member or not (a member always has one: enrolling makes it first if missing,
so a contact whose first profile write this is has no member to copy its name to).
Erasure inserts a tombstone into ``erased_contacts`` (atomic)
and then scrubs the profile and the member's copy (``erased: true``); a copy of the
contact's name is written guarded by that flag, a consent decision checks the tombstone
afterwards, so a racing update cannot resurrect an erased name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common import clock, updates
from crm_common import events as ev
from crm_common.errors import VersionConflict

from . import domain

MEMBERS = "members"
LEDGER = "ledger"
PENDING = "pending_ledger"            # entries staged with the write that appends them
PENDING_COUNT = f"{PENDING}_n"        # (crm_common.events.clear_staged's naming)
STAGED_AT = "staged_at"
REFUNDS = "refunded_orders"
MIGRATIONS = "migrations"             # one document per data migration done


@dataclass
class Member:
    """A member as stored: its points state, its version, the contact's display name."""

    contact_id: str
    version: int
    state: domain.MemberState
    display_name: str | None = None
    erased: bool = False

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Member":
        return cls(doc["_id"], doc["version"], domain.MemberState.from_doc(doc), doc.get("display_name"),
                   bool(doc.get("erased")))


@dataclass
class Written:
    """What a mutation did: the change (None: nothing to do), the member after it, and
    the events it staged: about the member, and per ledger entry."""

    change: domain.Change | None
    member: Member | None
    staged: list[dict[str, Any]] | None = field(default_factory=list)
    entry_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    before: Member | None = None    # the member the write started from (undo restores it)


class LoyaltyStore:
    def __init__(self, db: Database):
        self.db = db
        self.members = db[MEMBERS]
        self.ledger = db[LEDGER]
        self.profiles = db.profiles
        self.erasures = db.erased_contacts
        self.refunds = db[REFUNDS]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        """Every index of the service; each one's first key is what a query filters on."""
        db[MEMBERS].create_index("due_at")                 # expiry timer: {due_at: {$lte: now}}
        db[MEMBERS].create_index(ev.OUTBOX_COUNT)          # outbox relay: {_outbox_n: {$gt: 0}}
        db[MEMBERS].create_index(PENDING_COUNT)            # leftovers: {pending_ledger_n: {$gt: 0}}
        db[LEDGER].create_index([("contact_id", ASCENDING), ("seq", DESCENDING)], unique=True)
        db[LEDGER].create_index(ev.OUTBOX_COUNT)           # outbox relay of the entries' events
        db[REFUNDS].create_index("refunded_at")            # forgetting: {refunded_at: {$lt: cutoff}}
        cls(db).migrate_version_chains()
        cls(db).backfill_member_profiles()

    def backfill_member_profiles(self) -> int:
        """Members enrolled before every member had a profile get an empty one, once per
        database (save_contact copies a name to the member only where the profile existed
        before its write). Harmless on several replicas at once."""
        if self.db[MIGRATIONS].find_one({"_id": "member_profiles"}):
            return 0
        now, made = clock.now(), 0
        for doc in self.members.find({}, {"_id": 1}):
            made += self.profiles.update_one({"_id": doc["_id"]}, {"$setOnInsert": {"created_at": now}},
                                             upsert=True).upserted_id is not None
        self.db[MIGRATIONS].update_one({"_id": "member_profiles"}, {"$set": {"at": now, "profiles": made}},
                                       upsert=True)
        return made

    def migrate_version_chains(self) -> int:
        """Members stored by the earlier design (an append-only chain ``member_versions``
        and a head cache in ``members``) become one document each: the chain's newest
        state, its ledger entries still pending inserted first. Runs at start; a no-op
        once the chain is gone."""
        chains = self.db["member_versions"]
        if "member_versions" not in self.db.list_collection_names():
            return 0
        tips: dict[str, dict[str, Any]] = {}
        for doc in chains.find({"state": {"$exists": True}}):
            if doc["contact_id"] not in tips or doc["version"] > tips[doc["contact_id"]]["version"]:
                tips[doc["contact_id"]] = doc
            for entry in (doc.get(PENDING) or {}).values():
                try:
                    self.ledger.insert_one(entry)
                except DuplicateKeyError:
                    pass
        now = clock.now()
        for contact_id, tip in tips.items():
            state = domain.MemberState.from_doc(tip["state"])
            profile = self.profile(contact_id) or {}
            self.members.replace_one({"_id": contact_id}, {
                "_id": contact_id, **state.to_doc(), "version": tip["version"], "due_at": domain.next_due(state, now),
                "created_at": tip.get("created_at", now), "updated_at": now, "display_name": profile.get("display_name"),
                "erased": bool(profile.get("erased")), PENDING: {}, PENDING_COUNT: 0,
                ev.OUTBOX: {}, ev.OUTBOX_COUNT: 0}, upsert=True)
        chains.drop()
        return len(tips)

    # -- members ----------------------------------------------------------------------
    def member(self, contact_id: str) -> Member | None:
        doc = self.members.find_one({"_id": contact_id})
        return None if doc is None else Member.from_doc(doc)

    def write(self, contact_id: str, before: Member | None, change: domain.Change,
              staged: list[dict[str, Any]], entry_events: dict[str, list[dict[str, Any]]], now: datetime,
              *, forget: list[str] = ()) -> Member:
        """``change`` in ONE guarded write: its ledger entries staged with their events
        (``pending_ledger.<entry id>``), its other events in the outbox; VersionConflict
        when another write got there first. ``forget``: entries of earlier writes known to
        be in the ledger now, whose staged copies this write drops; the write is guarded by
        their presence too, as the relay's repair drops them as well (counted once)."""
        state = change.state.to_doc()
        entries = {e["_id"]: {"entry": e, "events": entry_events.get(e["_id"], [])} for e in change.entries}
        due_at = domain.next_due(change.state, now)
        if before is None:
            profile = self.profile(contact_id)
            if profile is None:   # first the profile: a member always has one (save_contact)
                self.profiles.update_one({"_id": contact_id}, {"$setOnInsert": {"created_at": now}}, upsert=True)
                profile = {}
            doc = {"_id": contact_id, **state, "version": 1, "due_at": due_at, "created_at": now, "updated_at": now,
                   "display_name": profile.get("display_name"), "erased": bool(profile.get("erased")),
                   PENDING: entries, PENDING_COUNT: len(entries), STAGED_AT: now}
            try:
                self.members.insert_one(ev.stage_on_insert(doc, staged))
            except DuplicateKeyError:
                raise VersionConflict(f"member {contact_id} was enrolled concurrently, retry",
                                      {"contact_id": contact_id}) from None
            self._recheck_profile(contact_id, doc["display_name"])
            return Member(contact_id, 1, change.state, doc["display_name"], doc["erased"])
        sets = {**state, **{f"{PENDING}.{k}": e for k, e in entries.items()}, "due_at": due_at, "updated_at": now}
        forget = [k for k in forget if k not in entries]
        incs = {"version": 1}
        if entries or forget:
            incs[PENDING_COUNT] = len(entries) - len(forget)
        if entries:
            sets[STAGED_AT] = now
        update = {"$set": sets, "$inc": incs}
        if forget:
            update["$unset"] = {f"{PENDING}.{k}": "" for k in forget}
        present = {f"{PENDING}.{k}": {"$exists": True} for k in forget}
        result = self.members.update_one({"_id": contact_id, "version": before.version, **present},
                                         ev.stage_on_update(update, staged))
        if result.matched_count != 1:
            still = self.members.find_one({"_id": contact_id, "version": before.version},
                                          {f"{PENDING}.{k}": 1 for k in forget}) if forget else None
            if still is None:
                raise VersionConflict(f"member {contact_id} changed meanwhile, retry", {"contact_id": contact_id})
            # the relay dropped some first (repair_leftovers, which does not move the version)
            return self.write(contact_id, before, change, staged, entry_events, now,
                              forget=[k for k in forget if k in (still.get(PENDING) or {})])
        return Member(contact_id, before.version + 1, change.state, before.display_name, before.erased)

    def undo(self, contact_id: str, after: Member, change: domain.Change, before: Member,
             staged: list[dict[str, Any]], now: datetime) -> None:
        """Take back a write whose entries collided in the ledger, if nobody wrote since
        (else VersionConflict): the state as it was, the entries it staged (and the
        copies of them it inserted) gone, its events never published."""
        ids = [e["_id"] for e in change.entries]
        self.ledger.delete_many({"_id": {"$in": ids}, "contact_id": contact_id,
                                 "seq": {"$in": [e["seq"] for e in change.entries]}})
        unset = {f"{PENDING}.{k}": "" for k in ids} | {f"{ev.OUTBOX}.{e['event_id']}": "" for e in staged}
        update = {"$set": {**before.state.to_doc(), "due_at": domain.next_due(before.state, now), "updated_at": now},
                  "$unset": unset, "$inc": {"version": 1, PENDING_COUNT: -len(ids), ev.OUTBOX_COUNT: -len(staged)}}
        present = {f"{PENDING}.{k}": {"$exists": True} for k in ids}   # not dropped by the relay meanwhile
        if self.members.update_one({"_id": contact_id, "version": after.version, **present},
                                   update).matched_count != 1:
            raise VersionConflict(f"member {contact_id} changed meanwhile, retry", {"contact_id": contact_id})

    # -- the ledger -------------------------------------------------------------------
    def materialize(self, contact_id: str, entries: list[dict[str, Any]],
                    entry_events: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Insert staged entries into the ledger, each with its events in its own outbox
        (the ledger is an outbox collection); returns those whose id another entry holds
        already (a purchase that earned before, for another contact or long ago). A
        second insert of the very same entry (a relay) is not a collision."""
        if not entries:
            return []
        try:
            self.ledger.insert_many([ev.stage_on_insert(e, entry_events.get(e["_id"], [])) for e in entries],
                                    ordered=False)
            return []
        except BulkWriteError as exc:
            failed = {err["op"]["_id"] for err in exc.details.get("writeErrors", []) if err.get("code") == 11000}
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise
        existing = {d["_id"]: d for d in self.ledger.find({"_id": {"$in": sorted(failed)}}, {"contact_id": 1, "seq": 1})}
        refused = [e for e in entries if e["_id"] in failed and not _same_entry(existing.get(e["_id"]), e)]
        # a refused earn's settlement must not stay in the ledger without it
        refused_ids = {e["_id"] for e in refused}
        tied = [e for e in domain.tied_to(entries, refused_ids) if e["_id"] not in refused_ids]
        if tied:
            self.ledger.delete_many({"_id": {"$in": [e["_id"] for e in tied]}, "contact_id": contact_id,
                                     "seq": {"$in": [e["seq"] for e in tied]}})
        return refused + tied

    def leftovers(self, older_than: timedelta = timedelta(seconds=5), limit: int = 200) -> list[dict[str, Any]]:
        """Members with entries staged longer than ``older_than``: in the ledger already
        (their copies wait to be dropped by the member's next write) or, after a crash
        between the write and the insert, not yet."""
        cutoff = clock.now() - older_than
        return [d for d in self.members.find({PENDING_COUNT: {"$gt": 0}}, {PENDING: 1, STAGED_AT: 1})
                .limit(limit) if (d.get(STAGED_AT) or cutoff) <= cutoff]

    def forget_entries(self, contact_id: str, entry_ids: list[str]) -> None:
        """Drop staged copies of entries that are in the ledger now."""
        ev.clear_staged(self.members, contact_id, {PENDING: entry_ids})

    def ledger_entry(self, entry_id: str) -> dict[str, Any] | None:
        return self.ledger.find_one({"_id": entry_id})

    def find_entry(self, contact_id: str, entry_id: str) -> dict[str, Any] | None:
        """An entry already applied: from the ledger, or still staged on the member."""
        entry = self.ledger_entry(entry_id)
        if entry is not None:
            return entry
        doc = self.members.find_one({"_id": contact_id}, {f"{PENDING}.{entry_id}": 1})
        staged = ((doc or {}).get(PENDING) or {}).get(entry_id)
        return staged["entry"] if staged else None

    def list_ledger(self, contact_id: str, page_size: int, before_seq: int | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"contact_id": contact_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        return list(self.ledger.find(query).sort("seq", DESCENDING).limit(page_size))

    # -- refunds ----------------------------------------------------------------------
    def note_refund(self, order_id: str, contact_id: str, reason: str, at: datetime) -> None:
        """Remember that ``order_id`` was refunded (the first refund's words stay)."""
        try:
            self.refunds.insert_one({"_id": order_id, "contact_id": contact_id, "reason": reason, "refunded_at": at})
        except DuplicateKeyError:
            pass

    def refund(self, order_id: str) -> dict[str, Any] | None:
        return self.refunds.find_one({"_id": order_id})

    def forget_refunds(self, before: datetime) -> int:
        return self.refunds.delete_many({"refunded_at": {"$lt": before}}).deleted_count

    # -- queries ----------------------------------------------------------------------
    def page_members(self, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {"_id": {"$gt": after_id}} if after_id else {}
        return list(self.members.find(query, {PENDING: 0, ev.OUTBOX: 0}).sort("_id", ASCENDING).limit(limit))

    def due_members(self, now: datetime, limit: int = 500) -> list[str]:
        return [d["_id"] for d in self.members.find({"due_at": {"$lte": now}}, {"_id": 1}).limit(limit)]

    def member_stats(self) -> dict[str, dict[str, int]]:
        """``{tier: {"members", "points"}}``. One accumulator per ``$group``: FerretDB v1
        returns 0 for every ``$sum`` after the first one in the same stage (a known gap,
        tests/integration/database)."""
        stats: dict[str, dict[str, int]] = {}
        for name, expr in (("members", 1), ("points", "$balance")):
            for row in self.members.aggregate([{"$group": {"_id": "$tier", "n": {"$sum": expr}}}]):
                stats.setdefault(row["_id"], {"members": 0, "points": 0})[name] = row["n"]
        return stats

    # -- the read model of contacts (personal data) -------------------------------------
    def is_erased(self, contact_id: str) -> bool:
        return self.erasures.find_one({"_id": contact_id}, {"_id": 1}) is not None

    def profile(self, contact_id: str) -> dict[str, Any] | None:
        return self.profiles.find_one({"_id": contact_id})

    def save_contact(self, contact: dict[str, Any]) -> None:
        """From contact_created / contact_updated: keep display_name, newest contact version
        wins. One guarded upsert of the profile (no read, no tombstone check: an erasure
        scrubs the profile after its tombstone, so this write comes before the scrub or is
        refused by ``erased``), then the member's copy if there is a member, guarded alike."""
        contact_id, version = contact["id"], contact.get("version")
        now = clock.now()
        fields: dict[str, Any] = {"display_name": contact.get("display_name"), "updated_at": now}
        guard: dict[str, Any] = {"erased": {"$ne": True}}
        if isinstance(version, int):
            fields["contact_version"] = version
            guard.update(updates.older_than("contact_version", version))
        before = updates.upsert_unless(self.profiles, contact_id, guard,
                                       {"$set": fields, "$setOnInsert": {"created_at": now}})
        if not before:
            # None: a newer version, or the erasure, is stored already. {}: this write made
            # the profile, so there is no member yet (a member's profile exists before it:
            # enrolling makes one if missing, then copies it and looks again after its insert)
            return
        self.members.update_one({"_id": contact_id, "erased": {"$ne": True}},
                                {"$set": {"display_name": fields["display_name"]}})

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
        if "display_name" in fields:   # the member's copy (none yet: enrolling copies the profile)
            self.members.update_one({"_id": contact_id}, {"$set": {"display_name": fields["display_name"]}})
        if self.is_erased(contact_id):  # write-then-check: an erasure racing with us wins
            self._scrub(contact_id)

    def _recheck_profile(self, contact_id: str, copied: str | None) -> None:
        """After enrolling: a profile write that raced the enrolment may have missed the
        new member; copy again if the name moved, scrub if the contact was erased."""
        profile = self.profile(contact_id) or {}
        if profile.get("display_name") != copied:
            self.members.update_one({"_id": contact_id}, {"$set": {"display_name": profile.get("display_name")}})
        if self.is_erased(contact_id):
            self._scrub(contact_id)

    def erase(self, contact_id: str) -> None:
        try:
            self.erasures.insert_one({"_id": contact_id, "erased_at": clock.now()})
        except DuplicateKeyError:
            pass
        self._scrub(contact_id)

    def _scrub(self, contact_id: str) -> None:
        now = clock.now()
        self.profiles.update_one({"_id": contact_id},
                                 {"$set": {"display_name": None, "erased": True, "updated_at": now},
                                  "$setOnInsert": {"created_at": now}}, upsert=True)
        self.members.update_one({"_id": contact_id}, {"$set": {"display_name": None, "erased": True}})


def _same_entry(existing: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    return existing is not None and existing.get("contact_id") == entry["contact_id"] \
        and existing.get("seq") == entry["seq"]
