"""Persistence of campaigns and their messages, and why nothing is sent twice.

``campaigns``    one document per campaign: content, audience, schedule, budget and what
                 is spent of it (``spent_minor``, moved only by guarded ``$inc``), state,
                 ``version``, the queueing lease, the outbox (campaign_started/completed).
``messages``     one per (campaign, contact): ``_id`` is derived from the pair, so the
                 audience is queued at most once however often queueing runs (a retry,
                 two replicas: the second insert is a duplicate key). A message moves
                 queued/deferred -> sending with ONE guarded write (``status`` in the
                 filter) before anything is handed to the mail server: of two workers
                 holding it, one wins and the other skips it. A message found still
                 ``sending`` after its lease (the worker died mid-send) is marked failed
                 ("interrupted"), never sent again: the server may have taken it.
                 Each outcome is written with its event staged (message_sent ...).
``batches``      the messages of a campaign in fixed groups; a delivery worker leases a
                 batch (guarded write), works through it, and stores the batch's counts,
                 recounted from its messages each time, so progress is exact after a crash.
``contact_sends`` per contact, the messages of every campaign sent within the frequency
                 cap's window, changed only by version-guarded writes (a reservation
                 before sending, released if the send fails).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common import events as ev
from crm_common import updates
from crm_common.errors import AlreadyExists, FailedPrecondition, NotFound, VersionConflict

from . import domain as D

CAMPAIGNS = "campaigns"
MESSAGES = "messages"
BATCHES = "batches"
SENDS = "contact_sends"
COUNTED = (D.QUEUED, D.DEFERRED, D.SENDING, D.SENT, D.FAILED, D.BOUNCED)


def batch_id(campaign_id: str, n: int) -> str:
    return f"{campaign_id}-b{n:05d}"


class CampaignStore:
    def __init__(self, db: Database):
        self.db = db
        self.campaigns = db[CAMPAIGNS]
        self.messages = db[MESSAGES]
        self.batches = db[BATCHES]
        self.sends = db[SENDS]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[CAMPAIGNS].create_index("due_at")               # scheduler and queueing: {due_at: {$lte: now}}
        db[CAMPAIGNS].create_index("name_key", unique=True)
        db[CAMPAIGNS].create_index(ev.OUTBOX_COUNT)
        db[MESSAGES].create_index("campaign_id")
        db[MESSAGES].create_index("contact_id")            # erasure: scrub a contact's addresses
        db[MESSAGES].create_index(ev.OUTBOX_COUNT)
        db[BATCHES].create_index("due_at")                 # delivery: {due_at: {$lte: now}}
        db[BATCHES].create_index("campaign_id")

    # -- campaigns ------------------------------------------------------------------------
    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            self.campaigns.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            existing = self.campaigns.find_one({"name_key": doc["name_key"]}, {"_id": 1})
            if existing and existing["_id"] == doc["_id"]:
                return self.get(doc["_id"])
            raise AlreadyExists(f"a campaign named {doc['name']!r} exists already",
                                {"existing_id": (existing or {}).get("_id", "")}) from None
        return doc

    def get(self, campaign_id: str) -> dict[str, Any]:
        doc = self.campaigns.find_one({"_id": campaign_id})
        if doc is None:
            raise NotFound(f"campaign {campaign_id} not found", {"campaign_id": campaign_id})
        return doc

    def page(self, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {"_id": {"$gt": after_id}} if after_id else {}
        return list(self.campaigns.find(query, {"content": 0}).sort("_id", 1).limit(limit))

    def transition(self, campaign_id: str, version: int, sets: dict[str, Any], staged: list[dict[str, Any]] = (),
                   *, before: dict[str, Any] | None = None) -> None:
        """A guarded change of the campaign (its version), with events staged; VersionConflict.
        With ``before`` (the campaign as read), only the fields that changed are written."""
        if before is None:
            update: dict[str, Any] = {"$set": sets, "$inc": {"version": 1}}
        else:
            update = updates.update({k: before[k] for k in sets if k in before}, sets, **{"$inc": {"version": 1}})
        result = self.campaigns.update_one({"_id": campaign_id, "version": version}, ev.stage_on_update(update, staged))
        if result.matched_count != 1:
            raise VersionConflict(f"campaign {campaign_id} changed meanwhile", {"campaign_id": campaign_id})

    def due(self, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
        """Campaigns with work for the scheduler: a scheduled send whose time came, a
        queueing whose lease is free."""
        return list(self.campaigns.find({"due_at": {"$lte": now}}, {"content": 0}).limit(limit))

    def take_queueing(self, campaign: dict[str, Any], owner: str, lease: timedelta, now: datetime) -> bool:
        return self.campaigns.update_one(
            {"_id": campaign["_id"], "state": D.RUNNING, "queue.state": "pending",
             "queue.lease": campaign.get("queue", {}).get("lease")},
            {"$set": {"queue.lease": now + lease, "queue.owner": owner, "due_at": now + lease}}).modified_count == 1

    def reserve_budget(self, campaign_id: str, budget_minor: int, cost_minor: int) -> bool:
        """One message's cost, if the budget still covers it (atomic: never over)."""
        return self.campaigns.update_one({"_id": campaign_id, "spent_minor": {"$lte": budget_minor - cost_minor}},
                                         {"$inc": {"spent_minor": cost_minor}}).modified_count == 1

    def refund_budget(self, campaign_id: str, cost_minor: int) -> None:
        self.campaigns.update_one({"_id": campaign_id}, {"$inc": {"spent_minor": -cost_minor}})

    # -- queueing --------------------------------------------------------------------------
    def insert_messages(self, docs: list[dict[str, Any]]) -> None:
        """Idempotent: a message queued before (the same campaign and contact) stays as it is."""
        _insert_new(self.messages, docs)

    def insert_batches(self, docs: list[dict[str, Any]]) -> None:
        _insert_new(self.batches, docs)

    def release_batches(self, campaign_id: str, now: datetime) -> None:
        """Queueing done: the batches become work for the delivery workers."""
        self.batches.update_many({"campaign_id": campaign_id, "state": "held"},
                                 {"$set": {"state": "ready", "due_at": now}})

    # -- delivery ----------------------------------------------------------------------------
    def take_batch(self, owner: str, lease: timedelta, now: datetime) -> dict[str, Any] | None:
        for doc in self.batches.find({"due_at": {"$lte": now}}, {"messages": 0}).limit(20):
            if doc.get("state") != "ready" or (doc.get("lease") and doc["lease"] > now):
                continue
            taken = self.batches.update_one({"_id": doc["_id"], "state": "ready", "lease": doc.get("lease")},
                                            {"$set": {"lease": now + lease, "owner": owner}})
            if taken.modified_count == 1:
                return self.batches.find_one({"_id": doc["_id"]})
        return None

    def batch_messages(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.messages.find({"_id": {"$in": batch["messages"]}}))

    def batch_progress(self, batch: dict[str, Any], owner: str, counts: dict[str, Any]) -> dict[str, Any]:
        """The batch's counts so far (it stays leased); returns the batch as it now stands."""
        self.batches.update_one({"_id": batch["_id"], "owner": owner},
                                updates.update({"counts": batch.get("counts") or {}}, {"counts": counts}))
        return {**batch, "counts": counts}

    def finish_batch(self, batch: dict[str, Any], owner: str, counts: dict[str, Any], due_at: datetime | None) -> None:
        """The batch's counts; done (``due_at`` None) or back in the queue for its deferred messages."""
        update = updates.update({"counts": batch.get("counts") or {}}, {"counts": counts}, **{
            "$set": {"lease": None, "owner": None, "due_at": due_at, "state": "ready" if due_at else "done"}})
        self.batches.update_one({"_id": batch["_id"], "owner": owner}, update)

    def batch_counts(self, campaign_id: str) -> tuple[dict[str, Any], int]:
        """The counts of every batch summed, and how many batches are not done."""
        total: dict[str, Any] = {}
        open_batches = 0
        for b in self.batches.find({"campaign_id": campaign_id}, {"counts": 1, "state": 1}):
            if b.get("state") != "done":
                open_batches += 1
            for key, value in (b.get("counts") or {}).items():
                if isinstance(value, dict):
                    bucket = total.setdefault(key, {})
                    for k, v in value.items():
                        bucket[k] = bucket.get(k, 0) + v
                else:
                    total[key] = total.get(key, 0) + value
        return total, open_batches

    def claim(self, message_id: str, status: str, owner: str, now: datetime) -> bool:
        """queued/deferred -> sending, if nobody else took it (the exactly-once point)."""
        return self.messages.update_one({"_id": message_id, "status": status},
                                        {"$set": {"status": D.SENDING, "claimed_by": owner,
                                                  "claimed_at": now}}).modified_count == 1

    def settle(self, message_id: str, from_status: str | tuple[str, ...], sets: dict[str, Any],
               staged: list[dict[str, Any]] = ()) -> bool:
        """Move a message on from ``from_status`` (guarded), with events staged."""
        statuses = [from_status] if isinstance(from_status, str) else list(from_status)
        update = ev.stage_on_update({"$set": sets}, staged)
        return self.messages.update_one({"_id": message_id, "status": {"$in": statuses}},
                                        update).modified_count == 1

    def message(self, message_id: str) -> dict[str, Any]:
        doc = self.messages.find_one({"_id": message_id})
        if doc is None:
            raise NotFound(f"message {message_id} not found", {"message_id": message_id})
        return doc

    def list_messages(self, campaign_id: str, status: str | None, after_id: str | None,
                      limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"campaign_id": campaign_id}
        if after_id:
            query["_id"] = {"$gt": after_id}
        if status:
            query["status"] = status
        return list(self.messages.find(query).sort("_id", 1).limit(limit))

    def record_engagement(self, message_id: str, guard: dict[str, Any], sets: dict[str, Any],
                          staged: list[dict[str, Any]]) -> bool:
        """First open / first click of a link / unsubscribe / reply of a message: ``guard``
        (e.g. ``{"opened_at": None}``) makes it happen once."""
        update = ev.stage_on_update({"$set": sets}, staged)
        return self.messages.update_one({"_id": message_id, **guard}, update).modified_count == 1

    def scrub_contact(self, contact_id: str) -> None:
        """Erasure: the addresses messages were sent to go; the counts stay."""
        self.messages.update_many({"contact_id": contact_id}, {"$set": {"address": None, "clicks": {}}})

    # -- frequency caps -------------------------------------------------------------------
    def sends_of(self, contact_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.sends.find({"_id": {"$in": contact_ids}})}

    def reserve_send(self, contact_id: str, record: dict[str, Any] | None, message_id: str, now: datetime,
                     window: timedelta) -> None:
        """Record a send in the contact's window (pruning what fell out of it), guarded by
        the version it was read at; VersionConflict when another send got there first."""
        sends = D.sends_in_window((record or {}).get("sends") or {}, now, window)
        sends[message_id] = now
        if record is None:
            try:
                self.sends.insert_one({"_id": contact_id, "sends": sends, "version": 1})
            except DuplicateKeyError:
                raise VersionConflict(f"sends of {contact_id} changed meanwhile") from None
            return
        if self.sends.update_one({"_id": contact_id, "version": record["version"]},
                                 {"$set": {"sends": sends}, "$inc": {"version": 1}}).matched_count != 1:
            raise VersionConflict(f"sends of {contact_id} changed meanwhile")

    def release_send(self, contact_id: str, message_id: str) -> None:
        """A reserved send did not happen: it no longer counts (guarded read-modify-write)."""
        for _ in range(5):
            record = self.sends.find_one({"_id": contact_id})
            if record is None or message_id not in (record.get("sends") or {}):
                return
            sends = {k: v for k, v in record["sends"].items() if k != message_id}
            if self.sends.update_one({"_id": contact_id, "version": record["version"]},
                                     {"$set": {"sends": sends}, "$inc": {"version": 1}}).matched_count == 1:
                return


def _insert_new(collection, docs: list[dict[str, Any]]) -> None:
    """Insert what is not there yet (an existing ``_id`` is the same document, written before)."""
    if not docs:
        return
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


def require_state(campaign: dict[str, Any], *states: str, doing: str) -> None:
    if campaign["state"] not in states:
        raise FailedPrecondition(f"campaign {campaign['_id']} is {campaign['state']}: cannot {doing}",
                                 {"campaign_id": campaign["_id"], "state": campaign["state"]})
