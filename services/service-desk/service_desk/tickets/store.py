"""Tickets and their conversations, and why writing them is safe without transactions.

One document per ticket (``tkt_<ULID>``: ``_id`` order is opening order) holds its
state, SLA, history and outbox; every change is the plain MongoDB idiom: read at
version v, compute (tickets.domain), ONE ``update_one({_id, version: v})`` that also
stages the events, the audit entry and, for a reply, the message itself under
``_messages.<id>``. Then the message is inserted into ``messages`` (``_id`` = message
id, unique ``(ticket_id, seq)``: a second insert is a no-op), the events published and
the staged items dropped in one update. A crash in between leaves the message staged:
the relay timer inserts it before re-publishing the events (``repair_messages``).

Two top-level datetimes drive the timers, each under its own index (our FerretDB build
uses an index for a range on one top-level field): ``sla_due_at`` (the earliest SLA
warning or breach not yet published, service_desk.sla.clocks.Sla.next_due) and
``close_at`` (when a resolved ticket's reopen window ends). A timer's write is guarded by
the version it read, so of two replicas handling the same due ticket exactly one writes
and publishes; the other finds nothing left to do.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import clock
from crm_common import events as ev
from crm_common.errors import NotFound, VersionConflict

from .domain import ACTIVE, ERASED, Change

TICKETS = "tickets"
MESSAGES = "messages"
STAGED = "_messages"               # messages staged with the ticket write that adds them
STAGED_COUNT = f"{STAGED}_n"       # (crm_common.events.clear_staged's naming)


class TicketStore:
    def __init__(self, db: Database):
        self.db = db
        self.tickets = db[TICKETS]
        self.messages = db[MESSAGES]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        for field in ("contact_id", "status", "group", "assignee", "sla_due_at", "close_at", "opened_at",
                      ev.OUTBOX_COUNT, STAGED_COUNT):
            db[TICKETS].create_index(field)
        db[MESSAGES].create_index([("ticket_id", ASCENDING), ("seq", ASCENDING)], unique=True)
        db[MESSAGES].create_index("contact_id")

    # -- tickets ---------------------------------------------------------------------
    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """False when the ticket exists already (the same open, replayed)."""
        try:
            self.tickets.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def get(self, ticket_id: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ticket, if the caller's scope lets them see it (else NotFound, as if it did
        not exist)."""
        doc = self.tickets.find_one({"_id": ticket_id, **(scope or {})}, {ev.OUTBOX: 0, STAGED: 0})
        if doc is None:
            raise NotFound(f"ticket {ticket_id} not found", {"ticket_id": ticket_id})
        return doc

    def write(self, ticket: dict[str, Any], change: Change, staged: list[dict[str, Any]], now: datetime) -> dict:
        """``change`` in ONE write guarded by the version read; VersionConflict if another
        write got there first. Returns the ticket as written."""
        sets = {**change.sets, "updated_at": now}
        if change.history:
            sets["history"] = list(ticket.get("history") or []) + change.history
        update: dict[str, Any] = {"$set": sets, "$inc": {"version": 1}}
        if change.message:
            sets[f"{STAGED}.{change.message['_id']}"] = change.message
            update["$inc"][STAGED_COUNT] = 1
        result = self.tickets.update_one({"_id": ticket["_id"], "version": ticket["version"]},
                                         ev.stage_on_update(update, staged))
        if result.matched_count != 1:
            raise VersionConflict(f"ticket {ticket['_id']} changed meanwhile, retry", {"ticket_id": ticket["_id"]})
        return {**ticket, **sets, "version": ticket["version"] + 1}

    def list(self, query: dict[str, Any], after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {**query, "_id": {"$lt": after_id} if after_id else {"$gt": ""}}
        return list(self.tickets.find(query, {ev.OUTBOX: 0, STAGED: 0, "history": 0})
                    .sort("_id", DESCENDING).limit(limit))

    def due(self, field: str, now: datetime, limit: int = 200) -> list[str]:
        """Ids of tickets whose ``field`` (sla_due_at, close_at) has passed: an index range."""
        return [d["_id"] for d in self.tickets.find({field: {"$lte": now}}, {"_id": 1}).limit(limit)]

    def active_of(self, contact_id: str) -> list[str]:
        return [d["_id"] for d in self.tickets.find({"contact_id": contact_id}, {"status": 1})
                if d.get("status") in ACTIVE]

    def opened_between(self, since: datetime, until: datetime, group: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"opened_at": {"$gte": since, "$lt": until}}
        if group:
            query["group"] = group
        return list(self.tickets.find(query, {"sla": 1, "category": 1, "channel": 1, "group": 1, "assignee": 1,
                                              "csat": 1, "first_response_at": 1, "resolved_at": 1}))

    def count_active(self, group: str | None = None) -> dict[tuple[str, str], int]:
        """Active tickets by (status, priority)."""
        query: dict[str, Any] = {"status": {"$in": list(ACTIVE)}}
        if group:
            query["group"] = group
        rows = self.tickets.aggregate([{"$match": query},
                                       {"$group": {"_id": {"s": "$status", "p": "$priority"}, "n": {"$sum": 1}}}])
        return {(r["_id"]["s"], r["_id"]["p"]): int(r["n"]) for r in rows}

    def count_breached_active(self) -> int:
        return self.tickets.count_documents({"status": {"$in": list(ACTIVE)}, "sla_breached": True})

    def load_by_agent(self) -> dict[str, int]:
        rows = self.tickets.aggregate([{"$match": {"status": {"$in": list(ACTIVE)}}},
                                       {"$group": {"_id": "$assignee", "n": {"$sum": 1}}}])
        return {r["_id"]: int(r["n"]) for r in rows if isinstance(r["_id"], str)}

    # -- the conversation ------------------------------------------------------------
    def add_message(self, message: dict[str, Any]) -> None:
        try:
            self.messages.insert_one(message)
        except DuplicateKeyError:
            pass   # inserted before (a relay's repair, a replay)

    def list_messages(self, ticket_id: str, after_seq: int, limit: int, *, public_only: bool) -> list[dict]:
        """In order; ``public_only``: what the customer may read (internal notes never)."""
        query: dict[str, Any] = {"ticket_id": ticket_id, "seq": {"$gt": after_seq}}
        if public_only:
            query["internal"] = False
        return list(self.messages.find(query).sort("seq", ASCENDING).limit(limit))

    def repair_messages(self, older_than: timedelta = timedelta(seconds=5), limit: int = 200) -> int:
        """Messages a crash left staged on their ticket go into ``messages`` (then dropped
        from the ticket): what the relay does first."""
        cutoff = clock.now() - older_than
        repaired = 0
        for doc in self.tickets.find({STAGED_COUNT: {"$gt": 0}}, {STAGED: 1, "updated_at": 1}).limit(limit):
            if doc.get("updated_at") and doc["updated_at"] > cutoff:
                continue
            staged = doc.get(STAGED) or {}
            for message in staged.values():
                self.add_message(message)
            ev.clear_staged(self.tickets, doc["_id"], {STAGED: list(staged)})
            repaired += 1
        return repaired

    # -- erasure ------------------------------------------------------------------------
    def anonymize_messages(self, contact_id: str, now: datetime) -> int:
        return self.messages.update_many({"contact_id": contact_id, "body": {"$ne": ERASED}},
                                         {"$set": {"body": ERASED, "erased_at": now}}).modified_count

    def of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        return list(self.tickets.find({"contact_id": contact_id}, {"csat": 1, "erased": 1, "version": 1}))
