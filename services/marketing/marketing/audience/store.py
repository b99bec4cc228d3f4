"""Persistence of the audience: one document per contact, and the pages a full
evaluation reads. Why two, and why it is safe:

``audience`` (``_id`` = contact id)
    The read model of one contact (audience.state's parts: ``contact``, ``consents``,
    ``purchases``, ``orders``, ``loyalty``, ``tickets``, ``engagement``, ``expectations``,
    ``segments``), a ``version``, and the outbox. Every change is read, compute (pure),
    ONE ``update_one({_id, version})`` of the fields that changed (crm_common.updates):
    the facts, the memberships they cause and the events announcing them are stored
    together or not at all. Of two writers racing from
    the same version one wins; the other re-reads and recomputes.

``audience_pages`` (``_id`` = ``p0000`` .. ``p1023``)
    The compact facts (audience.facts) and memberships of every contact, a thousand
    contacts' worth per page document: ``e.<contact id>`` holds them as one JSON string,
    ``ev.<contact id>`` the audience version they are of. FerretDB's cost is per document
    and per field, so 100,000 contacts read as 1,024 documents of ~100 string fields
    (about a second) instead of 100,000 documents of ~40 fields (measured: ten times
    slower); on MongoDB it is just fewer, larger reads. A page entry is written after
    the audience document, guarded by its version (``ev.<id> < v``), so a late writer of
    an older version never overwrites a newer entry. The audience write stages
    ``_paged.<version>`` (crm_common.events' staged-item pattern); it is cleared with the
    outbox once the page holds that version, and the relay timer re-pages leftovers after
    a crash in between.

Contact ids are validated (crm_common.contracts.Id: letters, digits, ``_``, ``-``) before
they become field names here.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

import orjson
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common import clock, updates
from crm_common import events as ev
from crm_common.errors import VersionConflict

AUDIENCE = "audience"
PAGES = "audience_pages"
PAGE_COUNT = 1024
PAGED = "_paged"                   # {<version>: true} while the page lags the document
PAGED_COUNT = f"{PAGED}_n"
STAGED_AT = "staged_at"
#: The parts of the read model (audience.state) stored as top-level fields.
PARTS = ("contact", "consents", "erased", "purchases", "orders", "loyalty", "tickets", "engagement",
         "expectations", "expectations_contact", "segments")


@dataclass(frozen=True)
class Entry:
    """One contact as a page holds it."""

    page: str
    contact_id: str
    version: int
    facts: dict[str, Any]
    segments: list[str]


def page_of(contact_id: str) -> str:
    return f"p{zlib.crc32(contact_id.encode()) % PAGE_COUNT:04d}"


def state_of(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The read model's parts of a stored document (what audience.state works on)."""
    return {k: doc[k] for k in PARTS if doc and doc.get(k) is not None}


_EMPTY = (None, False, 0, "", [], {})


def encode_entry(facts: dict[str, Any], segments: list[str]) -> str:
    """A page entry: facts without their empty values (a rule reads a missing key as none,
    zero or empty), so a full evaluation reads and parses about half as much."""
    compact = {k: v for k, v in facts.items() if not any(v is e or v == e and type(v) is type(e) for e in _EMPTY)}
    return orjson.dumps({"f": compact, "s": segments}).decode()


class AudienceStore:
    def __init__(self, db: Database):
        self.db = db
        self.audience = db[AUDIENCE]
        self.pages = db[PAGES]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[AUDIENCE].create_index(ev.OUTBOX_COUNT)      # outbox relay: {_outbox_n: {$gt: 0}}
        db[AUDIENCE].create_index(PAGED_COUNT)          # re-paging leftovers: {_paged_n: {$gt: 0}}
        cls(db).create_pages()

    def create_pages(self) -> None:
        """Every page exists from the start (an entry is then always a guarded update)."""
        if self.pages.estimated_document_count() >= PAGE_COUNT:
            return
        try:
            self.pages.insert_many([{"_id": f"p{i:04d}", "e": {}, "ev": {}} for i in range(PAGE_COUNT)], ordered=False)
        except BulkWriteError:
            pass   # another replica, or an earlier start, created some of them

    # -- documents -------------------------------------------------------------------
    def get(self, contact_id: str) -> dict[str, Any] | None:
        return self.audience.find_one({"_id": contact_id})

    def get_many(self, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.audience.find({"_id": {"$in": contact_ids}})}

    def write(self, contact_id: str, before: dict[str, Any] | None, state: dict[str, Any],
              staged: list[dict[str, Any]], now: datetime) -> int:
        """Store ``state`` (and stage ``staged`` and the page marker) guarded by the version
        ``before`` was read at; the new version, or VersionConflict."""
        if before is None:
            version = 1
            doc = {"_id": contact_id, **state, "version": version, "created_at": now, "updated_at": now,
                   PAGED: {str(version): True}, PAGED_COUNT: 1, STAGED_AT: now}
            try:
                self.audience.insert_one(ev.stage_on_insert(doc, staged))
            except DuplicateKeyError:
                raise VersionConflict(f"audience {contact_id} was created concurrently, retry") from None
            return version
        version = before["version"] + 1
        update = updates.update(state_of(before), state, **{
            "$set": {"version": version, "updated_at": now, f"{PAGED}.{version}": True, STAGED_AT: now},
            "$inc": {PAGED_COUNT: 1}})
        result = self.audience.update_one({"_id": contact_id, "version": before["version"]},
                                          ev.stage_on_update(update, staged))
        if result.matched_count != 1:
            raise VersionConflict(f"audience {contact_id} changed meanwhile, retry")
        return version

    def drop_all(self) -> None:
        """A rebuild from scratch starts here (the pages are emptied, not dropped)."""
        self.audience.delete_many({})
        self.pages.update_many({}, {"$set": {"e": {}, "ev": {}}})

    # -- pages -------------------------------------------------------------------------
    def sync_page(self, contact_id: str, version: int, facts: dict[str, Any], segments: list[str]) -> bool:
        """Put the contact's facts of ``version`` in its page, unless a newer version is
        there already (then False: nothing to do either)."""
        key = contact_id
        result = self.pages.update_one(
            {"_id": page_of(key), "$or": [{f"ev.{key}": {"$lt": version}}, {f"ev.{key}": {"$exists": False}}]},
            {"$set": {f"e.{key}": encode_entry(facts, segments), f"ev.{key}": version}})
        return result.modified_count == 1

    def paged(self, contact_id: str, versions: list[str]) -> None:
        """Drop page markers of versions the page holds now (no outbox to clear with them)."""
        ev.clear_staged(self.audience, contact_id, {PAGED: versions})

    def leftovers(self, older_than: timedelta = timedelta(seconds=5), limit: int = 200) -> list[dict[str, Any]]:
        """Documents whose page may lag: a crash between the two writes."""
        cutoff = clock.now() - older_than
        return [d for d in self.audience.find({PAGED_COUNT: {"$gt": 0}}).limit(limit)
                if (d.get(STAGED_AT) or cutoff) <= cutoff]

    def scan(self, pages: list[str] | None = None) -> Iterator["Entry"]:
        """Every contact's page entry (of ``pages``), page by page in page order, contacts
        by id within a page."""
        query = {"_id": {"$in": pages}} if pages is not None else {}
        for page in self.pages.find(query, batch_size=64).sort("_id", 1):
            versions = page.get("ev") or {}
            for cid in sorted(page.get("e") or {}):
                entry = orjson.loads(page["e"][cid])
                yield Entry(page["_id"], cid, versions.get(cid, 0), entry["f"], entry["s"])

    def scan_from(self, after: tuple[str, str] | None, chunk: int = 32) -> Iterator["Entry"]:
        """Like :meth:`scan`, reading ``chunk`` pages at a time, behind ``(page, contact_id)``."""
        pages = [p for p in self.page_ids() if after is None or p >= after[0]]
        for start in range(0, len(pages), chunk):
            for entry in self.scan(pages[start:start + chunk]):
                if after is None or (entry.page, entry.contact_id) > after:
                    yield entry

    def page_ids(self) -> list[str]:
        return [f"p{i:04d}" for i in range(PAGE_COUNT)]
