"""Persistence of pipelines and deals.

* ``pipelines``: the default pipeline (``pip_default``) is created at start if missing
  (an upsert with ``$setOnInsert``: harmless on several replicas at once).
* ``deals``: one document per deal (``deal_<ULID>``; a deal a lead conversion opens has
  an id derived from the lead, so a retried conversion finds it), an outbox collection;
  every change one version-guarded ``update_one``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.errors import NotFound

from . import domain

PIPELINES = "pipelines"
DEALS = "deals"


class DealStore:
    def __init__(self, db: Database):
        self.pipelines = db[PIPELINES]
        self.deals = db[DEALS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[DEALS].create_index("owner")
        db[DEALS].create_index("team")
        db[DEALS].create_index("status")            # open deals: forecast, gauges
        db[DEALS].create_index("contact_id")
        db[DEALS].create_index("created_at")        # reports over a period
        db[DEALS].create_index(ev.OUTBOX_COUNT)
        db[PIPELINES].create_index(ev.OUTBOX_COUNT)
        now = clock.now()
        db[PIPELINES].update_one({"_id": domain.DEFAULT_PIPELINE_ID},
                                 {"$setOnInsert": {**domain.DEFAULT_PIPELINE, "created_at": now, "updated_at": now,
                                                   "version": 1}}, upsert=True)

    # -- pipelines ----------------------------------------------------------------------
    def pipeline(self, pipeline_id: str | None, field: str = "pipeline_id") -> dict[str, Any]:
        pid = pipeline_id or domain.DEFAULT_PIPELINE_ID
        doc = self.pipelines.find_one({"_id": pid}, {ev.OUTBOX: 0})
        if doc is None:
            raise NotFound(f"{field}: no pipeline {pid}", {"pipeline_id": pid, "field": field})
        return doc

    def all_pipelines(self) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.pipelines.find({}, {ev.OUTBOX: 0})}

    def insert_pipeline(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        try:
            self.pipelines.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    # -- deals --------------------------------------------------------------------------
    def find(self, deal_id: str) -> dict[str, Any] | None:
        return self.deals.find_one({"_id": deal_id}, {ev.OUTBOX: 0})

    def get(self, deal_id: str, scope: dict[str, Any] | None = None, field: str = "deal_id") -> dict[str, Any]:
        """The deal if the caller's ``scope`` lets them see it (else not found)."""
        doc = self.deals.find_one({"_id": deal_id, **(scope or {})}, {ev.OUTBOX: 0})
        if doc is None:
            raise NotFound(f"{field}: deal {deal_id} not found", {"deal_id": deal_id})
        return doc

    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """False when the deal exists already (a replayed create or conversion)."""
        try:
            self.deals.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def update(self, deal: dict[str, Any], sets: dict[str, Any], staged: list[dict[str, Any]],
               now: datetime) -> dict[str, Any]:
        """``sets`` on the deal at its version, with ``staged`` in the same write (VersionConflict
        when somebody wrote it first); the deal after it."""
        return ev.update_versioned(self.deals, deal, sets, staged, now, kind="deal")

    def page(self, filters: dict[str, Any], scope: dict[str, Any], after_id: str | None,
             limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"_id": {"$lt": after_id} if after_id else {"$gt": ""}}
        query.update({k: v for k, v in filters.items() if v is not None})
        for key, value in scope.items():
            if query.setdefault(key, value) != value:
                return []
        return list(self.deals.find(query, {ev.OUTBOX: 0}).sort("_id", DESCENDING).limit(limit))

    def matching(self, filters: dict[str, Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
        """Every deal matching ``filters`` (values only) and ``scope``: for the forecast
        and reports, computed in Python."""
        query = {k: v for k, v in filters.items() if v is not None}
        for key, value in scope.items():
            if query.setdefault(key, value) != value:
                return []
        return list(self.deals.find(query, {ev.OUTBOX: 0, "products": 0}))

    def open_of_owner(self, owner: str, limit: int = 500) -> list[dict[str, Any]]:
        return [d for d in self.deals.find({"owner": owner}, {ev.OUTBOX: 0}).limit(limit * 4)
                if d["status"] == domain.OPEN][:limit]

    def of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.deals.find({"contact_id": contact_id}, {ev.OUTBOX: 0}))
