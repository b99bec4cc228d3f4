"""The service desk's configuration: calendars, SLA policies, groups and agents. Small
collections, read whole (a few dozen documents); each save is one upsert carrying its
audit entry in the document's outbox (crm_common.audit).

An agent's ``open_count`` is how many active tickets they hold: taking a round-robin
ticket is a guarded increment (``open_count < cap`` and available, in the filter), so
a cap is never exceeded by racing assignments; a resolved or reassigned ticket gives its
slot back. A crash between a ticket write and its counter leaves the count off by one:
the gauge timer recounts from the tickets (:meth:`ConfigStore.reconcile_loads`)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from crm_common import events as ev
from crm_common.errors import NotFound

CALENDARS, POLICIES, GROUPS, AGENTS = "calendars", "sla_policies", "groups", "agents"
CONFIG = (CALENDARS, POLICIES, GROUPS, AGENTS)


class ConfigStore:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        for name in CONFIG:
            db[name].create_index(ev.OUTBOX_COUNT)

    def save(self, collection: str, doc: dict[str, Any], staged: list[dict[str, Any]], now: datetime, *,
             on_insert: dict[str, Any] | None = None) -> dict:
        """Create or replace ``doc``'s fields (``created_at`` and ``on_insert`` are set on
        creation only: an agent's counters survive a save)."""
        doc_id = doc["_id"]
        fields = {k: v for k, v in doc.items() if k != "_id"}
        update = ev.stage_on_update({"$set": {**fields, "updated_at": now}, "$inc": {"version": 1},
                                     "$setOnInsert": {"created_at": now, **(on_insert or {})}}, staged)
        self.db[collection].update_one({"_id": doc_id}, update, upsert=True)
        return self.get(collection, doc_id)

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        doc = self.find(collection, doc_id)
        if doc is None:
            raise NotFound(f"{collection.rstrip('s').replace('_', ' ')} {doc_id} not found", {"id": doc_id})
        return doc

    def find(self, collection: str, doc_id: str | None) -> dict[str, Any] | None:
        if not doc_id:
            return None
        return self.db[collection].find_one({"_id": doc_id}, {ev.OUTBOX: 0})

    def all(self, collection: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.db[collection].find(query or {}, {ev.OUTBOX: 0}).sort("_id", 1).limit(1000))

    # -- agents' load ------------------------------------------------------------------
    def claim_slot(self, agent_id: str, cap: int, now: datetime) -> bool:
        """One more active ticket for an available agent under ``cap``; False if not."""
        return self.db[AGENTS].update_one(
            {"_id": agent_id, "available": True, "open_count": {"$lt": cap}},
            {"$inc": {"open_count": 1}, "$set": {"last_assigned_at": now}}).matched_count == 1

    def add_load(self, agent_id: str, n: int) -> None:
        """+1 (a ticket given by hand, or reopened) or -1 (resolved, moved away)."""
        if n > 0:
            self.db[AGENTS].update_one({"_id": agent_id}, {"$inc": {"open_count": n}})
        elif n < 0:
            self.db[AGENTS].update_one({"_id": agent_id, "open_count": {"$gte": -n}}, {"$inc": {"open_count": n}})

    def reconcile_loads(self, actual: dict[str, int]) -> int:
        """Counters that disagree with the tickets are set to what the tickets say, each
        guarded by the value read (a concurrent change wins; the next round looks again)."""
        fixed = 0
        for agent in self.db[AGENTS].find({}, {"open_count": 1}):
            want, have = actual.get(agent["_id"], 0), agent.get("open_count", 0)
            if want != have and self.db[AGENTS].update_one({"_id": agent["_id"], "open_count": have},
                                                           {"$set": {"open_count": want}}).matched_count:
                fixed += 1
        return fixed
