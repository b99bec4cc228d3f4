"""Segments as the RPCs answer them (crm.v1.Segment, SegmentMember)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .store import rule_of


def segment_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "description": doc.get("description") or "",
            "kind": doc["kind"], "rule": rule_of(doc), "state": doc.get("state", "active"),
            "members": int(doc.get("members") or 0), "fill_state": doc.get("fill") or "done",
            "time_relative": bool(doc.get("time_relative")), "version": doc["version"],
            "filled_at": clock.to_iso(doc.get("filled_at")), "created_at": clock.to_iso(doc["created_at"]),
            "updated_at": clock.to_iso(doc["updated_at"])}


def member_view(contact_id: str, doc: dict[str, Any] | None, segment_id: str) -> dict[str, Any]:
    doc = doc or {}
    membership = (doc.get("segments") or {}).get(segment_id) or {}
    return {"contact_id": contact_id, "display_name": (doc.get("contact") or {}).get("display_name") or "",
            "since": clock.to_iso(membership.get("since"))}
