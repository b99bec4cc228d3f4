"""The sales team's directory: reps (``_id`` = the rep's id, what records store as
``owner``), territories (``_id`` = name) and each team's round-robin turn (``teams``).

Capacity without transactions: a rep's ``open_leads`` counts the open leads they own.
Taking a lead is ONE guarded increment (``{_id, active: true, open_leads: {$lt:
capacity}}``), so two replicas assigning at once can never push a rep past capacity;
giving one back is a guarded decrement (never below zero). A crash between taking a
slot and storing the lead leaves a count one too high: the reconcile timer recounts the
open leads of every active rep (:meth:`TeamStore.reconcile`)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.errors import NotFound, VersionConflict

from . import domain

REPS = "reps"
TERRITORIES = "territories"
TEAMS = "teams"


class TeamStore:
    def __init__(self, db: Database):
        self.reps = db[REPS]
        self.territories = db[TERRITORIES]
        self.teams = db[TEAMS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[REPS].create_index("team")                 # a team's reps: {team: t}
        db[REPS].create_index("active")               # reassigning what inactive reps own
        db[REPS].create_index(ev.OUTBOX_COUNT)
        db[TERRITORIES].create_index(ev.OUTBOX_COUNT)

    # -- reps -------------------------------------------------------------------------
    def rep(self, rep_id: str) -> dict[str, Any] | None:
        return self.reps.find_one({"_id": rep_id})

    def get_rep(self, rep_id: str) -> dict[str, Any]:
        doc = self.rep(rep_id)
        if doc is None:
            raise NotFound(f"no salesperson {rep_id} in the sales team directory", {"rep_id": rep_id})
        return doc

    def save_rep(self, before: dict[str, Any] | None, fields: dict[str, Any], staged: list[dict[str, Any]],
                 now: datetime) -> dict[str, Any]:
        """Insert a rep or change one, version-guarded, staging ``staged`` in the same write."""
        if before is None:
            doc = {**fields, "open_leads": 0, "created_at": now, "updated_at": now, "version": 1}
            try:
                self.reps.insert_one(ev.stage_on_insert(doc, staged))
            except DuplicateKeyError:
                raise VersionConflict(f"salesperson {fields['_id']} was added concurrently, retry",
                                      {"rep_id": fields["_id"]}) from None
            self._ensure_team(fields["team"])
            return doc
        sets = {k: v for k, v in fields.items() if k != "_id"}
        update = ev.stage_on_update({"$set": {**sets, "updated_at": now}, "$inc": {"version": 1}}, staged)
        if self.reps.update_one({"_id": before["_id"], "version": before["version"]}, update).matched_count != 1:
            raise VersionConflict(f"salesperson {before['_id']} changed meanwhile, retry", {"rep_id": before["_id"]})
        self._ensure_team(sets.get("team", before["team"]))
        return {**before, **sets, "updated_at": now, "version": before["version"] + 1}

    def list_reps(self, team: str | None, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"_id": {"$gt": after_id or ""}}
        if team:
            query["team"] = team
        return list(self.reps.find(query, {ev.OUTBOX: 0}).sort("_id", 1).limit(limit))

    def team_reps(self, team: str) -> list[dict[str, Any]]:
        return list(self.reps.find({"team": team}, {ev.OUTBOX: 0}))

    def inactive_rep_ids(self) -> list[str]:
        return [d["_id"] for d in self.reps.find({"active": False}, {"_id": 1})]

    def active_reps(self) -> list[dict[str, Any]]:
        return list(self.reps.find({"active": True}, {ev.OUTBOX: 0}))

    # -- capacity and turns -------------------------------------------------------------
    def _ensure_team(self, team: str) -> None:
        try:
            self.teams.insert_one({"_id": team, "turn": 0})
        except DuplicateKeyError:
            pass

    def next_turn(self, team: str) -> int:
        """The team's next round-robin turn (one atomic increment)."""
        for _ in range(2):
            doc = self.teams.find_one_and_update({"_id": team}, {"$inc": {"turn": 1}},
                                                 return_document=ReturnDocument.AFTER)
            if doc is not None:
                return int(doc["turn"])
            self._ensure_team(team)
        return 0

    def take_slot(self, rep: dict[str, Any], default_capacity: int) -> bool:
        """One more open lead for ``rep``, unless inactive or at capacity (atomic)."""
        limit = domain.capacity(rep, default_capacity)
        return self.reps.update_one({"_id": rep["_id"], "active": True, "open_leads": {"$lt": limit}},
                                    {"$inc": {"open_leads": 1}}).matched_count == 1

    def count_slot(self, rep_id: str) -> None:
        """One more open lead for ``rep_id``, whatever their capacity (assigned by hand)."""
        self.reps.update_one({"_id": rep_id}, {"$inc": {"open_leads": 1}})

    def give_back_slot(self, rep_id: str | None) -> None:
        if rep_id:
            self.reps.update_one({"_id": rep_id, "open_leads": {"$gt": 0}}, {"$inc": {"open_leads": -1}})

    def reconcile(self, rep: dict[str, Any], counted: int) -> bool:
        """Set the rep's open-lead count to ``counted`` unless it moved since it was read."""
        if int(rep.get("open_leads") or 0) == counted:
            return False
        return self.reps.update_one({"_id": rep["_id"], "open_leads": rep.get("open_leads", 0)},
                                    {"$set": {"open_leads": counted}}).matched_count == 1

    # -- territories ------------------------------------------------------------------
    def all_territories(self) -> list[dict[str, Any]]:
        return [t for t in self.territories.find({}, {ev.OUTBOX: 0}) if not t.get("deleted")]

    def territory(self, name: str) -> dict[str, Any] | None:
        doc = self.territories.find_one({"_id": name}, {ev.OUTBOX: 0})
        return None if doc is None or doc.get("deleted") else doc

    def set_territory(self, doc: dict[str, Any], staged: list[dict[str, Any]], now: datetime) -> None:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        update = ev.stage_on_update({"$set": {**fields, "deleted": False, "updated_at": now},
                                     "$setOnInsert": {"created_at": now}}, staged)
        self.territories.update_one({"_id": doc["_id"]}, update, upsert=True)
        self._ensure_team(doc["team"])

    def delete_territory(self, name: str, staged: list[dict[str, Any]], now: datetime) -> bool:
        """Soft: the document stays (with its audit entry staged), leads no longer route by it."""
        update = ev.stage_on_update({"$set": {"deleted": True, "updated_at": now}}, staged)
        return self.territories.update_one({"_id": name, "deleted": False}, update).matched_count == 1
