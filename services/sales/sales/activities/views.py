"""Activities as the wire shows them (crm.v1.Activity)."""
from __future__ import annotations

from typing import Any

from crm_common import clock


def activity_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "kind": doc["kind"], "subject": doc["subject"], "notes": doc.get("notes") or "",
            "due_at": clock.to_iso(doc["due_at"]), "regarding": doc.get("regarding"),
            "contact_id": doc.get("contact_id") or "", "owner": doc.get("owner") or "", "team": doc.get("team") or "",
            "status": doc["status"], "outcome": doc.get("outcome") or "",
            "completed_at": clock.to_iso(doc.get("completed_at")), "reminded_at": clock.to_iso(doc.get("reminded_at")),
            "cancel_reason": doc.get("cancel_reason") or "",
            "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
            "updated_at": clock.to_iso(doc["updated_at"])}
