"""Persistence of leads.

* ``leads``: one document per lead (``_id`` = ``lead_<ULID>``, newest first by ``_id``),
  carrying its events and audit entry staged with each write (an outbox collection).
  Every change is one version-guarded ``update_one``.
* ``lead_keys``: the claims of open leads on their normalized email and phone
  (crm_common.claims): a second capture of the same person finds the open lead that
  holds the key and merges into it, also when both captures race.
* ``sales_settings``: ``{_id: "scoring"}``, the scoring rules in force (leads/scoring.py
  holds the defaults until somebody sets them).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.claims import Claims
from crm_common.errors import NotFound, VersionConflict

from . import domain, scoring
from .contracts import OPEN_STATUSES

LEADS = "leads"
KEYS = "lead_keys"
SETTINGS = "sales_settings"
CLAIM_GRACE = timedelta(seconds=30)


class LeadStore:
    def __init__(self, db: Database):
        self.leads = db[LEADS]
        self.settings = db[SETTINGS]
        self.claims = Claims(db[KEYS], self._holds, holder_field="lead_id", grace=CLAIM_GRACE)

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[LEADS].create_index("owner")          # a rep's leads, own scope, waiting leads (owner "")
        db[LEADS].create_index("team")           # team scope
        db[LEADS].create_index("status")
        db[LEADS].create_index("contact_id")     # facts about a contact reach its open lead
        db[LEADS].create_index("scored_with")    # rescoring after a rule change: {$lt: version}
        db[LEADS].create_index(ev.OUTBOX_COUNT)
        db[KEYS].create_index("lead_id")

    # -- reading ----------------------------------------------------------------------
    def find(self, lead_id: str) -> dict[str, Any] | None:
        return self.leads.find_one({"_id": lead_id}, {ev.OUTBOX: 0})

    def get(self, lead_id: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
        """The lead if the caller's ``scope`` lets them see it (one that is not theirs is
        not found, as one that does not exist)."""
        doc = self.leads.find_one({"_id": lead_id, **(scope or {})}, {ev.OUTBOX: 0})
        if doc is None:
            raise NotFound(f"lead {lead_id} not found", {"lead_id": lead_id})
        return doc

    def page(self, *, status: str | None, owner: str | None, grade: str | None, scope: dict[str, Any],
             after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"_id": {"$lt": after_id} if after_id else {"$gt": ""}}
        for key, value in (("status", status), ("owner", owner), ("grade", grade)):
            if value is not None:
                query[key] = value
        for key, value in scope.items():
            if query.setdefault(key, value) != value:
                return []
        return list(self.leads.find(query, {ev.OUTBOX: 0}).sort("_id", DESCENDING).limit(limit))

    def open_of_owner(self, owner: str, limit: int = 500) -> list[dict[str, Any]]:
        return [d for d in self.leads.find({"owner": owner}, {ev.OUTBOX: 0}).limit(limit * 4)
                if d["status"] in OPEN_STATUSES][:limit]

    def count_open(self, owner: str) -> int:
        return self.leads.count_documents({"owner": owner, "status": {"$in": list(OPEN_STATUSES)}})

    def waiting(self, limit: int = 100) -> list[dict[str, Any]]:
        """Open leads without an owner whose team is known (waiting for capacity)."""
        return [d for d in self.leads.find({"owner": ""}, {ev.OUTBOX: 0}).limit(limit * 4)
                if d["status"] in OPEN_STATUSES and d.get("team")][:limit]

    def open_of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return [d for d in self.leads.find({"contact_id": contact_id}, {ev.OUTBOX: 0})
                if d["status"] in OPEN_STATUSES]

    def of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.leads.find({"contact_id": contact_id}, {ev.OUTBOX: 0}))

    def to_rescore(self, version: int, limit: int = 200) -> list[dict[str, Any]]:
        return [d for d in self.leads.find({"scored_with": {"$lt": version}}, {ev.OUTBOX: 0}).limit(limit)]

    def holder_of(self, key: str) -> str | None:
        return self.claims.holder(key)

    # -- writing ----------------------------------------------------------------------
    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """False when a lead with this ``_id`` exists already (a capture replayed under its
        idempotency key, crm_common.ids.replayable)."""
        try:
            self.leads.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def update(self, lead: dict[str, Any], sets: dict[str, Any], staged: list[dict[str, Any]],
               now: datetime) -> dict[str, Any]:
        """``sets`` on the lead at its version, with ``staged`` in the same write (VersionConflict
        when somebody wrote it first); the lead after it."""
        return ev.update_versioned(self.leads, lead, sets, staged, now, kind="lead")

    # -- claims -------------------------------------------------------------------------
    def _holds(self, lead_id: str, key: str) -> bool:
        doc = self.leads.find_one({"_id": lead_id}, {"dedup_keys": 1, "status": 1})
        return doc is not None and domain.is_open(doc["status"]) and key in (doc.get("dedup_keys") or [])

    # -- scoring rules ------------------------------------------------------------------
    def scoring_rules(self) -> dict[str, Any]:
        doc = self.settings.find_one({"_id": "scoring"})
        return doc if doc is not None else scoring.DEFAULT_RULES

    def set_scoring_rules(self, rules: dict[str, Any], staged: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
        """Replace the rules; ``version`` grows by one (atomic), so leads scored with an
        older one are rescored."""
        current = self.settings.find_one({"_id": "scoring"})
        version = (current or {}).get("version", 0) + 1
        doc = {**rules, "version": version, "updated_at": now}
        if current is None:
            try:
                self.settings.insert_one(ev.stage_on_insert({"_id": "scoring", **doc}, staged))
                return doc
            except DuplicateKeyError:
                raise VersionConflict("the scoring rules were changed concurrently; retry") from None
        update = ev.stage_on_update({"$set": doc}, staged)
        if self.settings.update_one({"_id": "scoring", "version": current["version"]}, update).matched_count != 1:
            raise VersionConflict("the scoring rules were changed concurrently; retry")
        return doc
