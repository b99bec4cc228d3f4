"""Persistence of orders and purchase summaries.

* ``orders``: ``ord_<ULID>``, unique ``external_ref`` (two places of one reference:
  exactly one is stored, the other finds it), an outbox collection; every status change
  one version-guarded write.
* ``purchase_summaries``: one per contact (``_id`` = contact id), maintained by the
  service's own handlers of ``order_paid`` / ``order_refunded`` (at least once, from the
  outbox): each application is a version-guarded write that also stages
  ``purchase_summary_changed``; ``applied`` makes a repeated fact a no-op.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.errors import NotFound, VersionConflict

from . import summary

ORDERS = "orders"
SUMMARIES = "purchase_summaries"


class OrderStore:
    def __init__(self, db: Database):
        self.orders = db[ORDERS]
        self.summaries = db[SUMMARIES]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[ORDERS].create_index("external_ref", unique=True)
        db[ORDERS].create_index("contact_id")
        db[ORDERS].create_index(ev.OUTBOX_COUNT)
        db[SUMMARIES].create_index(ev.OUTBOX_COUNT)

    def find(self, order_id: str) -> dict[str, Any] | None:
        return self.orders.find_one({"_id": order_id}, {ev.OUTBOX: 0})

    def get(self, order_id: str, field: str = "order_id") -> dict[str, Any]:
        doc = self.find(order_id)
        if doc is None:
            raise NotFound(f"{field}: order {order_id} not found", {"order_id": order_id})
        return doc

    def by_ref(self, external_ref: str) -> dict[str, Any] | None:
        return self.orders.find_one({"external_ref": external_ref}, {ev.OUTBOX: 0})

    def insert(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Store the order; None if it is stored already: the order holding its
        ``external_ref`` is then returned by :meth:`by_ref`."""
        try:
            self.orders.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return None
        return doc

    def update(self, order: dict[str, Any], sets: dict[str, Any], staged: list[dict[str, Any]],
               now: datetime) -> dict[str, Any]:
        """``sets`` on the order at its version, with ``staged`` in the same write (VersionConflict
        when somebody wrote it first); the order after it."""
        return ev.update_versioned(self.orders, order, sets, staged, now, kind="order")

    def page(self, contact_id: str | None, status: str | None, after_id: str | None,
             limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"_id": {"$lt": after_id} if after_id else {"$gt": ""}}
        if contact_id:
            query["contact_id"] = contact_id
        if status:
            query["status"] = status
        return list(self.orders.find(query, {ev.OUTBOX: 0}).sort("_id", DESCENDING).limit(limit))

    # -- purchase summaries --------------------------------------------------------------
    def summary(self, contact_id: str) -> dict[str, Any]:
        return (self.summaries.find_one({"_id": contact_id}, {ev.OUTBOX: 0, ev.OUTBOX_COUNT: 0})
                or summary.empty(contact_id))

    def page_summaries(self, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = {"_id": {"$gt": after_id}} if after_id else {}
        return list(self.summaries.find(query, {ev.OUTBOX: 0, ev.OUTBOX_COUNT: 0, "applied": 0})
                    .sort("_id", ASCENDING).limit(limit))

    def save_summary(self, before: dict[str, Any], after: dict[str, Any], staged: list[dict[str, Any]]) -> None:
        """Write ``after`` over ``before`` (at its version), staging ``staged``."""
        fields = {k: v for k, v in after.items() if k not in ("_id", "version")}
        if before["version"] == 0:
            try:
                self.summaries.insert_one(ev.stage_on_insert({**after, "version": 1}, staged))
                return
            except DuplicateKeyError:
                raise VersionConflict(f"purchase summary of {before['_id']} created concurrently") from None
        update = ev.stage_on_update({"$set": fields, "$inc": {"version": 1}}, staged)
        if self.summaries.update_one({"_id": before["_id"], "version": before["version"]}, update).matched_count != 1:
            raise VersionConflict(f"purchase summary of {before['_id']} changed concurrently")
