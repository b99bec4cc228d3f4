"""Persistence of contacts, companies, dedup claims and the timeline (pymongo).

Collections:

* ``contacts``   one document per contact (``_id`` = ``con_<ULID>``, so ``_id``
  descending = newest first); carries ``search_terms`` (contacts.search), ``dedup_keys``
  (the claims it holds), ``consent_history`` (bounded) and the outbox.
* ``search_terms`` one document per (contact, term), ``_id`` = ``<contact_id>|<term>``,
  indexed on ``term``: a search is an index range over ``^word``. The contact's own
  ``search_terms`` are the truth; this collection is kept in step after each write that
  changes them (staged in that write as ``_terms.<version>``, so a crash in between is
  repaired by the relay timer), and every hit is checked against the contact.
* ``contact_keys`` dedup claims: ``_id`` is the unique key (``email:sara@example.com``,
  ``phone:+98912...``), ``contact_id`` the holder, ``claimed_at``.
* ``companies``  ``cmp_<ULID>``; one with a domain holds it (``dedup_keys``).
* ``company_keys`` the companies' claims: ``_id`` ``domain:example.com``, ``company_id``
  the holder (one company per web domain; names are not unique).
* ``erased_contacts`` a tombstone per erased contact, written before the erasure (the
  timeline handler checks it after storing a fact: a fact racing an erasure is blanked).
* ``timeline``   entries: manual interactions (``tle_<ULID>``) and the timeline facts
  other services publish (``_id`` derived from the fact's event id, so a redelivery
  adds nothing).

Uniqueness without transactions (FerretDB has none) and without unique indexes per array
element (FerretDB's unique index covers a whole array; MongoDB's multikey one would do,
but the code is one for both) — the claim protocol (crm_common.claims), here:

1. *create*: claim every key (insert ``{_id: key, contact_id: new_id}``), then insert
   the contact (with ``dedup_keys`` and the staged ``contact_created`` event).
2. *update*: claim the added keys, then the version-guarded contact write (with the
   new ``dedup_keys``), then release the removed keys.
3. *erase*: the version-guarded anonymizing write (``dedup_keys: []``), then release.

A claim is *held* when its contact exists and lists the key in ``dedup_keys``; a claim
not held is stale and taken over, unless younger than ``domain.CLAIM_GRACE``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Iterable

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.claims import Claims, KeyHeld
from crm_common.errors import AlreadyExists, FailedPrecondition, NotFound, VersionConflict
from crm_common.ids import new_id

from . import domain, search

log = logging.getLogger(__name__)

CONTACTS = "contacts"
KEYS = "contact_keys"
COMPANIES = "companies"
COMPANY_KEYS = "company_keys"
TIMELINE = "timeline"
TERMS = "search_terms"
ERASED = "erased_contacts"       # tombstones: {_id: contact_id}, written before the erasure itself
TERMS_STAGED = "_terms"          # {<contact version>: true} while search_terms lags the contact
MIGRATIONS = "migrations"        # one document per data migration done

class ContactsStore:
    def __init__(self, db: Database):
        self.db = db
        self.contacts = db[CONTACTS]
        self.keys = db[KEYS]
        self.companies = db[COMPANIES]
        self.timeline = db[TIMELINE]
        self.terms = db[TERMS]
        self.claims = Claims(self.keys, self._holds, holder_field="contact_id", grace=domain.CLAIM_GRACE)
        self.company_claims = Claims(db[COMPANY_KEYS], self._company_holds, holder_field="company_id",
                                     grace=domain.CLAIM_GRACE)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        """Every index of the service; each one's first key is what a query filters on
        (our FerretDB build uses an index for its first key only). Dedup needs none:
        claims are keyed by ``_id``."""
        db[CONTACTS].create_index("lifecycle_stage", name="lifecycle_stage")
        db[CONTACTS].create_index("owner", name="owner")
        db[CONTACTS].create_index("tags", name="tags")
        db[CONTACTS].create_index(ev.OUTBOX_COUNT, name="outbox_pending")
        db[COMPANIES].create_index(ev.OUTBOX_COUNT, name="outbox_pending")
        db[CONTACTS].create_index(f"{TERMS_STAGED}_n", name="terms_pending")
        db[TERMS].create_index("term", name="term")      # a contact's own terms: an _id range
        db[KEYS].create_index("contact_id", name="contact_id")
        db[TIMELINE].create_index([("contact_id", ASCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)],
                                  name="contact_time")
        cls(db).backfill_terms()
        cls(db).reindex_terms()
        cls(db).backfill_tombstones()
        cls(db).backfill_company_domains()

    def backfill_company_domains(self) -> int:
        """Companies created before domains were unique claim theirs, oldest first (a
        later duplicate keeps its record but not the domain): once per database."""
        if self.db[MIGRATIONS].find_one({"_id": "company_domains"}):
            return 0
        n = 0
        for doc in self.companies.find({"dedup_keys": {"$exists": False}}).sort("_id", ASCENDING):
            keys = domain.company_keys(doc.get("domain"))
            try:
                self.company_claims.claim(keys, doc["_id"], clock.now())
            except KeyHeld:
                keys = []
            self.companies.update_one({"_id": doc["_id"]}, {"$set": {"dedup_keys": keys}})
            n += 1
        self.db[MIGRATIONS].update_one({"_id": "company_domains"}, {"$set": {"at": clock.now(), "companies": n}},
                                       upsert=True)
        return n

    def backfill_tombstones(self) -> int:
        """Contacts erased before tombstones existed get theirs (once per database)."""
        if self.db[MIGRATIONS].find_one({"_id": "erased_tombstones"}):
            return 0
        n = 0
        for doc in self.contacts.find({"erased": True}, {"erased_at": 1}):
            self.mark_erased(doc["_id"], doc.get("erased_at") or clock.now())
            n += 1
        self.db[MIGRATIONS].update_one({"_id": "erased_tombstones"}, {"$set": {"at": clock.now(), "contacts": n}},
                                       upsert=True)
        return n

    def backfill_terms(self) -> int:
        """Contacts stored before the term index existed get their terms: once per
        database (a scan, at start; harmless on several replicas at once)."""
        if self.db[MIGRATIONS].find_one({"_id": "search_terms"}):
            return 0
        n = 0
        for doc in self.contacts.find({"search_terms": {"$exists": False}, "erased": False}):
            terms = search.terms(doc)
            self.contacts.update_one({"_id": doc["_id"], "search_terms": {"$exists": False}},
                                     {"$set": {"search_terms": terms}, "$unset": {"search_text": ""}})
            self.sync_terms(doc["_id"], (), terms)
            n += 1
        if n:
            log.info("indexed the search terms of %d contacts stored before the term index", n)
        self.db[MIGRATIONS].update_one({"_id": "search_terms"}, {"$set": {"at": clock.now(), "contacts": n}},
                                       upsert=True)
        return n

    def reindex_terms(self) -> int:
        """Contacts indexed by an earlier ``search.TERMS_VERSION`` (another folding) get
        their terms again: once per version and database (a scan, at start; each contact is
        a write guarded by the terms it had, so replicas doing it at once agree)."""
        migration = f"search_terms_v{search.TERMS_VERSION}"
        if self.db[MIGRATIONS].find_one({"_id": migration}):
            return 0
        n = 0
        for doc in self.contacts.find({"erased": False, "search_terms": {"$exists": True}}):
            old, new = doc.get("search_terms") or [], search.terms(doc)
            if old != new and self.contacts.update_one({"_id": doc["_id"], "search_terms": old},
                                                       {"$set": {"search_terms": new}}).matched_count:
                self.sync_terms(doc["_id"], old, new)
                n += 1
        if n:
            log.info("re-indexed the search terms of %d contacts (terms version %d)", n, search.TERMS_VERSION)
        self.db[MIGRATIONS].update_one({"_id": migration}, {"$set": {"at": clock.now(), "contacts": n}}, upsert=True)
        return n

    # ------------------------------------------------------------------ contacts

    def get_doc(self, contact_id: Any, scope: dict[str, str] | None = None) -> dict[str, Any]:
        """The contact, if the caller's ``scope`` (crm_common.access.Access.owner_filter)
        lets them see it: one that is not theirs is not found, as one that does not exist."""
        if not isinstance(contact_id, str) or not contact_id:
            raise NotFound(f"contact {contact_id!r} not found", {"contact_id": str(contact_id)})
        doc = self.contacts.find_one({"_id": contact_id, **(scope or {})})
        if doc is None:
            raise NotFound(f"contact {contact_id} not found", {"contact_id": contact_id})
        return doc

    def get_live_doc(self, contact_id: Any, scope: dict[str, str] | None = None) -> dict[str, Any]:
        doc = self.get_doc(contact_id, scope)
        if doc.get("erased"):
            raise FailedPrecondition(f"contact {contact_id} has been erased", {"contact_id": contact_id})
        return doc

    def insert_contact(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """False when a contact with this ``_id`` exists already: a create replayed under
        its idempotency key (crm_common.ids.replayable) after it was stored once."""
        doc = {**stored_form(doc), TERMS_STAGED: {str(doc["version"]): True}, f"{TERMS_STAGED}_n": 1}
        try:
            self.contacts.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError as exc:
            if (exc.details or {}).get("keyPattern", {"_id": 1}) == {"_id": 1} and self.contacts.find_one(
                    {"_id": doc["_id"]}, {"_id": 1}):
                return False
            raise
        return True

    def update_contact(self, contact_id: str, expected_version: int, sets: dict[str, Any],
                       staged: list[dict[str, Any]], now: datetime) -> None:
        """One version-guarded write of ``sets`` + the staged events; VersionConflict if stale.
        A change of ``search_terms`` is staged too (see the module docstring)."""
        unsets = {k: "" for k, v in sets.items() if v is None}   # absent is null (stored_form)
        sets, incs = {**{k: v for k, v in sets.items() if v is not None}, "updated_at": now}, {"version": 1}
        if "search_terms" in sets:
            sets[f"{TERMS_STAGED}.{expected_version + 1}"] = True
            incs[f"{TERMS_STAGED}_n"] = 1
        update = ev.stage_on_update({"$set": sets, "$inc": incs, **({"$unset": unsets} if unsets else {})}, staged)
        if self.contacts.update_one({"_id": contact_id, "version": expected_version}, update).matched_count != 1:
            raise self.version_conflict(contact_id, expected_version)

    def version_conflict(self, contact_id: str, expected_version: Any) -> VersionConflict:
        doc = self.get_doc(contact_id)
        return VersionConflict(
            f"contact {contact_id} is at version {doc['version']}, not {expected_version}; "
            "reload it and apply your change again",
            {"contact_id": contact_id, "current_version": doc["version"]})

    def search(self, *, words: list[str], tag: str | None, stage: str | None, owner: str | None,
               after_id: str | None, limit: int, scope: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Live contacts matching every filter and the caller's ``scope``, newest first, at
        most ``limit``. With ``words``, the candidates come from the term index (the
        longest word's prefix range) and each is checked against the contact itself."""
        query: dict[str, Any] = {"erased": False, "_id": {"$lt": after_id} if after_id else {"$gt": ""}}
        if tag:
            query["tags"] = tag
        if stage:
            query["lifecycle_stage"] = stage
        if owner:
            query["owner"] = owner
        for key, value in (scope or {}).items():
            if query.setdefault(key, value) != value:
                return []   # asks for someone else's contacts: none of them are visible
        fields = {"consent_history": 0}
        if not words:  # paged by _id on its index (our FerretDB build sorts it there too)
            return list(self.contacts.find(query, fields).sort("_id", DESCENDING).limit(limit))
        ids = sorted({d["contact_id"] for d in self.terms.find({"term": {"$regex": search.prefix_pattern(words[0])}},
                                                                {"contact_id": 1})
                      if not after_id or d["contact_id"] < after_id}, reverse=True)
        # Newest candidates first, as many at a time as the page still needs: each costs a
        # lookup by _id (sorted here: asking the database to sort an $in makes it walk the
        # _id index in order instead of looking the ids up).
        found: list[dict[str, Any]] = []
        start = 0
        while start < len(ids) and len(found) < limit:
            batch = ids[start:start + max(limit - len(found), 1)]
            start += len(batch)
            docs = self.contacts.find({**query, "_id": {"$in": batch}}, fields)
            found += [d for d in sorted(docs, key=lambda d: d["_id"], reverse=True)
                      if search.matches(words, d.get("search_terms") or ())]
        return found[:limit]

    # ------------------------------------------------------------------ the term index

    def sync_terms(self, contact_id: str, old: Iterable[str], new: Iterable[str]) -> None:
        """Bring ``search_terms`` in step with the contact's terms (idempotent)."""
        old, new = set(old), set(new)
        if new - old:
            try:
                self.terms.insert_many([{"_id": f"{contact_id}|{t}", "term": t, "contact_id": contact_id}
                                        for t in sorted(new - old)], ordered=False)
            except BulkWriteError as exc:   # already there (a repair, a replay): fine
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
        if old - new:
            self.terms.delete_many({"_id": {"$in": [f"{contact_id}|{t}" for t in sorted(old - new)]}})

    def terms_leftovers(self, older_than: timedelta = timedelta(seconds=5), limit: int = 200):
        """Contacts whose term index a crashed write left behind, and repair them."""
        cutoff = clock.now() - older_than
        repaired = 0
        for doc in self.contacts.find({f"{TERMS_STAGED}_n": {"$gt": 0}},
                                      {"search_terms": 1, TERMS_STAGED: 1, "updated_at": 1}).limit(limit):
            if doc["updated_at"] > cutoff:
                continue
            indexed = [d["term"] for d in self.terms.find(_terms_of(doc["_id"]), {"term": 1})]
            self.sync_terms(doc["_id"], indexed, doc.get("search_terms") or [])
            ev.clear_staged(self.contacts, doc["_id"], {TERMS_STAGED: list(doc.get(TERMS_STAGED) or {})})
            repaired += 1
        return repaired

    def count_by_stage(self) -> dict[str, int]:
        rows = self.contacts.aggregate([
            {"$match": {"erased": False}},
            {"$group": {"_id": "$lifecycle_stage", "n": {"$sum": 1}}},
        ])
        return {row["_id"]: int(row["n"]) for row in rows if isinstance(row["_id"], str)}

    # ------------------------------------------------------------------ dedup claims

    def claim_keys(self, keys: Iterable[str], contact_id: str, now: datetime) -> list[str]:
        """Claim every key for ``contact_id`` (crm_common.claims); returns the keys newly
        claimed by this call. On a key held by another contact, releases what this call
        claimed and raises AlreadyExists naming the field and the holder."""
        try:
            return self.claims.claim(keys, contact_id, now)
        except KeyHeld as held:
            raise AlreadyExists(
                f"{domain.describe_key(held.key)} already belongs to contact {held.holder}",
                {"existing_id": held.holder, "field": held.key.partition(':')[0] + "s", "key": held.key}) from None

    def _holds(self, contact_id: str, key: str) -> bool:
        doc = self.contacts.find_one({"_id": contact_id}, {"dedup_keys": 1})
        return doc is not None and key in (doc.get("dedup_keys") or [])

    def release_keys(self, keys: Iterable[str], contact_id: str) -> None:
        self.claims.release(keys, contact_id)

    def release_all_keys(self, contact_id: str) -> int:
        """Release every claim held by ``contact_id`` (erase: it keeps none)."""
        return self.claims.release_all(contact_id)

    # ------------------------------------------------------------------ companies

    def insert_company(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> dict[str, Any]:
        """Claim the company's domain (crm_common.claims), then insert it with its staged
        audit entry; returns ``doc``, or the stored company when this is a replay. A domain
        another company holds is ALREADY_EXISTS naming that company (``existing_id``)."""
        doc["dedup_keys"] = domain.company_keys(doc.get("domain"))
        try:
            self.company_claims.claim(doc["dedup_keys"], doc["_id"], doc["created_at"])
        except KeyHeld as held:
            raise AlreadyExists(f"domain {doc['domain']} already belongs to company {held.holder}",
                                {"existing_id": held.holder, "field": "company.domain", "key": held.key}) from None
        try:
            self.companies.insert_one(ev.stage_on_insert(dict(doc), staged))
        except DuplicateKeyError:  # replayed under its idempotency key: the first one stands
            return self.get_company(doc["_id"])
        return doc

    def _company_holds(self, company_id: str, key: str) -> bool:
        doc = self.companies.find_one({"_id": company_id}, {"dedup_keys": 1})
        return doc is not None and key in (doc.get("dedup_keys") or [])

    def get_company(self, company_id: Any) -> dict[str, Any]:
        doc = self.companies.find_one({"_id": company_id}) if isinstance(company_id, str) else None
        if doc is None:
            raise NotFound(f"company {company_id} not found", {"company_id": str(company_id)})
        return doc

    def company_exists(self, company_id: str) -> bool:
        return self.companies.find_one({"_id": company_id}, {"_id": 1}) is not None

    # ------------------------------------------------------------------ timeline

    def add_entry(self, entry: dict[str, Any], *, entry_id: str | None = None) -> dict[str, Any]:
        """Insert a timeline entry; with a derived ``entry_id`` a second insert is a no-op."""
        now = clock.now()
        doc = {"_id": entry_id or new_id("tle"), **entry, "created_at": now, "updated_at": now, "version": 1}
        try:
            self.timeline.insert_one(doc)
        except DuplicateKeyError:
            doc = self.timeline.find_one({"_id": doc["_id"]})
        return doc

    def timeline_page(self, contact_id: str, after: tuple[datetime, str] | None, limit: int
                      ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"contact_id": contact_id}
        if after:
            at, last_id = after
            query = {"$and": [query, {"$or": [{"occurred_at": {"$lt": at}},
                                                {"occurred_at": at, "_id": {"$lt": last_id}}]}]}
        cursor = self.timeline.find(query).sort([("occurred_at", DESCENDING), ("_id", DESCENDING)])
        return list(cursor.limit(limit))

    def anonymize_entries(self, contact_id: str, now: datetime) -> int:
        """Blank what people wrote or services said about an erased contact; the kind,
        source and time of each entry stay (an audit of what happened, not to whom)."""
        result = self.timeline.update_many(
            {"contact_id": contact_id},
            {"$set": {"summary": domain.ERASED_SUMMARY, "data": {}, "updated_at": now}})
        return result.modified_count

    def mark_erased(self, contact_id: str, now: datetime) -> None:
        """The tombstone an erasure writes first: what the timeline handler checks (a miss
        on this small collection is cheaper than reading the contact)."""
        try:
            self.db[ERASED].insert_one({"_id": contact_id, "erased_at": now})
        except DuplicateKeyError:
            pass

    def is_erased(self, contact_id: str) -> bool:
        return self.db[ERASED].find_one({"_id": contact_id}, {"_id": 1}) is not None


def stored_form(doc: dict[str, Any]) -> dict[str, Any]:
    """A new contact as stored: without its null fields, its empty lists and maps, and the
    consents never decided. Every reader takes a missing field as that default
    (``views.contact_view``, ``domain``: ``doc.get``), and FerretDB stores every field with
    its type, so a smaller document is cheaper to write and to read each time (a seeded
    contact: 3.2 KB of FerretDB's JSON, 2.2 KB without them). ``erased`` and
    ``search_terms`` stay: queries filter on them."""
    out = {k: v for k, v in doc.items() if k not in _DROPPED_WHEN_EMPTY or v not in (None, [], {})}
    consents = {ch: c for ch, c in (doc.get("consents") or {}).items() if c != domain.empty_consent()}
    if consents:
        out["consents"] = consents
    else:
        out.pop("consents", None)
    return out


_DROPPED_WHEN_EMPTY = frozenset({*domain.WRITABLE_FIELDS, "team", "consent_history"})


def _terms_of(contact_id: str) -> dict[str, Any]:
    """The filter of a contact's term documents (``<contact_id>|<term>``): an ``_id`` range."""
    return {"_id": {"$gte": f"{contact_id}|", "$lt": f"{contact_id}|\uffff"}}
