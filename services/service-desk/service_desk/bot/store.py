"""Bot conversations: one document per conversation (``bot_<ULID>``) with its transcript
(bounded: service_desk.bot.domain.MAX_TURNS), the ticket it was handed over to, and a
version guarding each turn's write."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from crm_common.errors import NotFound, VersionConflict

CONVERSATIONS = "bot_conversations"


class BotStore:
    def __init__(self, db: Database):
        self.conversations = db[CONVERSATIONS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[CONVERSATIONS].create_index("contact_id")

    def get(self, conversation_id: str) -> dict[str, Any]:
        doc = self.conversations.find_one({"_id": conversation_id})
        if doc is None:
            raise NotFound(f"bot conversation {conversation_id} not found", {"conversation_id": conversation_id})
        return doc

    def append(self, conv: dict[str, Any] | None, new: dict[str, Any], turns: list[dict[str, Any]],
               now: datetime, **sets: Any) -> dict[str, Any]:
        """The conversation with ``turns`` added, in one write guarded by its version
        (``conv`` None: a new conversation ``new``)."""
        if conv is None:
            doc = {**new, "turns": turns, **sets, "created_at": now, "updated_at": now, "version": 1}
            try:
                self.conversations.insert_one(doc)
            except DuplicateKeyError:
                raise VersionConflict(f"conversation {new['_id']} was started concurrently, retry") from None
            return doc
        update = {"$set": {"turns": conv["turns"] + turns, **sets, "updated_at": now}, "$inc": {"version": 1}}
        if self.conversations.update_one({"_id": conv["_id"], "version": conv["version"]}, update).matched_count != 1:
            raise VersionConflict(f"conversation {conv['_id']} moved on meanwhile, retry")
        return {**conv, "turns": conv["turns"] + turns, **sets, "version": conv["version"] + 1}

    def anonymize(self, contact_id: str, erased: str, now: datetime) -> int:
        n = 0
        for doc in self.conversations.find({"contact_id": contact_id}, {"turns": 1}):
            turns = [{**t, "text": erased} for t in doc.get("turns") or ()]
            self.conversations.update_one({"_id": doc["_id"]}, {"$set": {"turns": turns, "erased": True,
                                                                         "updated_at": now}})
            n += 1
        return n
