"""Campaigns and their messages as the RPCs answer them (crm.v1.Campaign,
CampaignProgress, CampaignMessage, DryRun)."""
from __future__ import annotations

from typing import Any

from crm_common import clock


def campaign_view(doc: dict[str, Any]) -> dict[str, Any]:
    content = doc.get("content") or {}
    return {"id": doc["_id"], "name": doc["name"], "channel": doc["channel"], "state": doc["state"],
            "email": content if doc["channel"] == "email" and content else None,
            "sms": content if doc["channel"] == "sms" and content else None,
            "defaults": dict(doc.get("defaults") or {}),
            "include_segment_ids": list(doc.get("include") or []),
            "exclude_segment_ids": list(doc.get("exclude") or []),
            "schedule_at": clock.to_iso(doc.get("schedule_at")), "budget": doc.get("budget"),
            "cost_per_message": doc.get("cost_per_message"),
            "spent": ({"amount_minor": int(doc.get("spent_minor") or 0), "currency": doc["budget"]["currency"]}
                      if doc.get("budget") else None),
            "recipients": int(doc.get("recipients") or 0), "version": doc["version"],
            "created_at": clock.to_iso(doc["created_at"]), "updated_at": clock.to_iso(doc["updated_at"]),
            "started_at": clock.to_iso(doc.get("started_at")), "completed_at": clock.to_iso(doc.get("completed_at"))}


def message_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "campaign_id": doc["campaign_id"], "contact_id": doc["contact_id"],
            "channel": doc["channel"], "status": doc["status"], "reason": doc.get("reason") or "",
            "detail": doc.get("detail") or "", "address": doc.get("address") or "",
            "attempts": int(doc.get("attempts") or 0), "not_before": clock.to_iso(doc.get("not_before")),
            "sent_at": clock.to_iso(doc.get("sent_at")), "opened_at": clock.to_iso(doc.get("opened_at")),
            "clicked_links": [c["link"] for c in (doc.get("clicks") or {}).values()],
            "replied_at": clock.to_iso(doc.get("replied_at")),
            "unsubscribed_at": clock.to_iso(doc.get("unsubscribed_at"))}


def dry_run_entry_view(entry: dict[str, Any], display_name: str) -> dict[str, Any]:
    return {"contact_id": entry["contact_id"], "display_name": display_name, "decision": entry["decision"],
            "reason": entry["reason"], "detail": entry["detail"], "not_before": clock.to_iso(entry["not_before"])}
