"""Persistence of activities (``act_<ULID>``, an outbox collection). ``reminder_at`` is
indexed: the reminder timer's query is an index range, whatever the number of done
activities."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.errors import NotFound

from . import domain

ACTIVITIES = "activities"


class ActivityStore:
    def __init__(self, db: Database):
        self.activities = db[ACTIVITIES]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[ACTIVITIES].create_index("owner")
        db[ACTIVITIES].create_index("reminder_at")      # the reminder timer: {reminder_at: {$lte: now}}
        db[ACTIVITIES].create_index("contact_id")
        db[ACTIVITIES].create_index("due_at")           # the overdue gauge
        db[ACTIVITIES].create_index(ev.OUTBOX_COUNT)

    def find(self, activity_id: str) -> dict[str, Any] | None:
        return self.activities.find_one({"_id": activity_id}, {ev.OUTBOX: 0})

    def get(self, activity_id: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self.activities.find_one({"_id": activity_id, **(scope or {})}, {ev.OUTBOX: 0})
        if doc is None:
            raise NotFound(f"activity {activity_id} not found", {"activity_id": activity_id})
        return doc

    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        try:
            self.activities.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def update(self, activity: dict[str, Any], sets: dict[str, Any], staged: list[dict[str, Any]],
               now: datetime) -> dict[str, Any]:
        """``sets`` on the activity at its version, with ``staged`` in the same write (VersionConflict
        when somebody wrote it first); the activity after it."""
        return ev.update_versioned(self.activities, activity, sets, staged, now, kind="activity")

    def of_owner(self, owner: str, status: str | None, scope: dict[str, Any]) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"owner": owner}
        if status:
            query["status"] = status
        for key, value in scope.items():
            if query.setdefault(key, value) != value:
                return []
        return list(self.activities.find(query, {ev.OUTBOX: 0}).sort([("due_at", ASCENDING), ("_id", ASCENDING)]))

    def open_of_owner(self, owner: str, limit: int = 500) -> list[dict[str, Any]]:
        return [d for d in self.activities.find({"owner": owner}, {ev.OUTBOX: 0}).limit(limit * 4)
                if d["status"] == domain.OPEN][:limit]

    def due(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        return list(self.activities.find({"reminder_at": {"$lte": now}}, {ev.OUTBOX: 0}).limit(limit))

    def mark_reminded(self, activity: dict[str, Any], staged: list[dict[str, Any]], now: datetime) -> bool:
        """Clear the reminder of an activity still due at the same time, with its event
        staged: True for the one caller (of any replica) whose write matched."""
        update = ev.stage_on_update({"$set": {"reminder_at": None, "reminded_at": now}}, staged)
        return self.activities.update_one({"_id": activity["_id"], "reminder_at": activity["reminder_at"],
                                           "status": domain.OPEN}, update).matched_count == 1

    def count_overdue(self, now: datetime) -> int:
        return self.activities.count_documents({"due_at": {"$lt": now}, "status": domain.OPEN})

    def of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.activities.find({"contact_id": contact_id}, {ev.OUTBOX: 0}))
