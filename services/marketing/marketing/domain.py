"""Rules of the marketing service as plain functions (no I/O; ``now`` is passed in)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common.ids import new_id

from .contracts import CreateNote


def new_note(req: CreateNote, now: datetime) -> dict[str, Any]:
    return {"_id": new_id("mar"), "contact_id": req.contact_id, "text": req.text,
            "created_at": now, "updated_at": now, "version": 1}
