"""What the marketing service answers with (the fields of crm.v1.Note)."""
from __future__ import annotations

from typing import Any

from crm_common import clock


def note_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "contact_id": doc["contact_id"], "text": doc["text"],
            "created_at": clock.to_iso(doc["created_at"])}
