"""The read model of the customers the service desk serves: what it learns from other
services' events (never their databases) and keeps in ``customers``, one document per
contact: display name (contacts), loyalty tier (loyalty), lifetime value per currency
and its segment (sales).

Events arrive on separate queues, so out of order: each fact is kept only if it is
newer than the one stored (the contact's version; the tier's change time; the
purchase summary's version, else its time), in a write guarded by the document's
version. A handler returns whether the customer's tier or segment moved: then their
active tickets have their SLA chosen again (elapsed time kept).

Erasure: a tombstone in ``erased_contacts`` first (a ticket opened for the contact later
is refused, one being opened concurrently checks it after its insert), then the name is
scrubbed here and the contact's tickets and conversations anonymized.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock, updates
from crm_common.errors import VersionConflict
from crm_common.retry import on_conflict

from .sla import policies
from .tickets.domain import Customer

CUSTOMERS = "customers"
ERASED = "erased_contacts"


class CustomerStore:
    def __init__(self, db: Database):
        self.db = db
        self.customers = db[CUSTOMERS]
        self.erasures = db[ERASED]

    def get(self, contact_id: str) -> Customer:
        doc = self.customers.find_one({"_id": contact_id}) or {}
        return Customer(contact_id, doc.get("display_name") or "", doc.get("tier") or "",
                        doc.get("segment") or "none", bool(doc.get("erased")))

    def names(self, contact_ids: list[str]) -> dict[str, str]:
        return {d["_id"]: d.get("display_name") or "" for d in
                self.customers.find({"_id": {"$in": sorted(set(contact_ids))}}, {"display_name": 1})}

    def is_erased(self, contact_id: str) -> bool:
        return self.erasures.find_one({"_id": contact_id}, {"_id": 1}) is not None

    @on_conflict()
    def _update(self, contact_id: str, fresher) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``fresher(doc) -> fields | None``: the fields to set if the fact is newer.
        Returns (before, after), or None when nothing changed."""
        doc = self.customers.find_one({"_id": contact_id})
        fields = fresher(doc or {})
        if not fields:
            return None
        now = clock.now()
        if doc is None:
            try:
                self.customers.insert_one({"_id": contact_id, "tier": "", "segment": "none", "display_name": "",
                                           **fields, "created_at": now, "updated_at": now, "version": 1})
            except DuplicateKeyError:
                raise VersionConflict(f"customer {contact_id} was written concurrently, retry") from None
            return {}, fields
        if self.customers.update_one({"_id": contact_id, "version": doc["version"]},
                                     {"$set": {**fields, "updated_at": now}, "$inc": {"version": 1}}).matched_count != 1:
            raise VersionConflict(f"customer {contact_id} was written concurrently, retry")
        return doc, {**doc, **fields}

    # -- facts from contacts -----------------------------------------------------------
    def save_contact(self, contact: dict[str, Any]) -> None:
        """The contact's name if its version is newer: one guarded upsert (no read, no
        tombstone check: an erasure scrubs after its tombstone, so this write comes before
        the scrub or is refused by ``erased``); ``version`` moves as with every write, so
        the read-then-write facts above still see a concurrent change."""
        contact_id, version = contact["id"], contact.get("version")
        now = clock.now()
        fields: dict[str, Any] = {"display_name": str(contact.get("display_name") or ""), "updated_at": now}
        guard: dict[str, Any] = {"erased": {"$ne": True}}
        if isinstance(version, int):
            fields["contact_version"] = version
            guard.update(updates.older_than("contact_version", version))
        updates.upsert_unless(self.customers, contact_id, guard, {
            "$set": fields, "$inc": {"version": 1},
            "$setOnInsert": {"tier": "", "segment": "none", "created_at": now}})

    # -- facts from loyalty --------------------------------------------------------------
    def save_tier(self, contact_id: str, tier: str, at: datetime) -> bool:
        """True when the customer's tier changed."""
        if tier not in policies.TIERS:
            return False

        def fresher(doc):
            if doc.get("tier_at") is not None and doc["tier_at"] >= at:
                return None
            return {"tier": tier, "tier_at": at}
        changed = self._update(contact_id, fresher)
        return bool(changed) and changed[0].get("tier") != tier

    # -- facts from sales ----------------------------------------------------------------
    def save_value(self, contact_id: str, summary: dict[str, Any], at: datetime,
                   bands: dict[str, tuple[int, int]]) -> bool:
        """True when the customer's value segment changed."""
        totals = [t for t in summary.get("totals") or () if isinstance(t, dict)]
        version = summary.get("version") if isinstance(summary.get("version"), int) else None
        segment = policies.segment_for(totals, bands)

        def fresher(doc):
            if version is not None and isinstance(doc.get("value_version"), int):
                if doc["value_version"] >= version:
                    return None
            elif doc.get("value_at") is not None and doc["value_at"] >= at:
                return None
            return {"totals": [{"amount_minor": t.get("amount_minor"), "currency": t.get("currency")} for t in totals],
                    "order_count": summary.get("order_count") if isinstance(summary.get("order_count"), int) else 0,
                    "segment": segment, "value_at": at, **({"value_version": version} if version is not None else {})}
        changed = self._update(contact_id, fresher)
        return bool(changed) and changed[0].get("segment", "none") != segment

    # -- erasure ---------------------------------------------------------------------------
    def erase(self, contact_id: str) -> None:
        try:
            self.erasures.insert_one({"_id": contact_id, "erased_at": clock.now()})
        except DuplicateKeyError:
            pass
        self.scrub(contact_id)

    def scrub(self, contact_id: str) -> None:
        now = clock.now()
        self.customers.update_one({"_id": contact_id},
                                  {"$set": {"display_name": "", "erased": True, "updated_at": now},
                                   "$setOnInsert": {"created_at": now, "tier": "", "segment": "none", "version": 0}},
                                  upsert=True)
