"""Persistence of the marketing service: documents and queries, indexes declared here."""
from __future__ import annotations

from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common import events as ev
from crm_common.errors import NotFound

NOTES = "notes"


class MarketingStore:
    def __init__(self, db: Database):
        self.db = db
        self.notes = db[NOTES]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[NOTES].create_index("contact_id")
        db[NOTES].create_index(ev.OUTBOX_COUNT)

    def insert_note(self, doc: dict[str, Any], staged: list[dict[str, Any]]) -> bool:
        """One write: the note and the events announcing it. False if it exists already
        (the same create, replayed under its idempotency key)."""
        try:
            self.notes.insert_one(ev.stage_on_insert(doc, staged))
        except DuplicateKeyError:
            return False
        return True

    def get_note(self, note_id: str) -> dict[str, Any]:
        doc = self.notes.find_one({"_id": note_id})
        if doc is None:
            raise NotFound(f"note {note_id} not found", {"note_id": note_id})
        return doc
