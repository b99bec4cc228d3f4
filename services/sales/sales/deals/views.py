"""Pipelines and deals as the wire shows them (crm.v1.Pipeline, Deal)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .domain import probability, time_in_stages


def pipeline_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "default": bool(doc.get("default")),
            "stages": [dict(s) for s in doc["stages"]], "version": doc.get("version", 1),
            "created_at": clock.to_iso(doc.get("created_at"))}


def _closed(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if not record else {**record, "at": clock.to_iso(record.get("at"))}


def deal_view(doc: dict[str, Any], pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    now = clock.now()
    return {
        "id": doc["_id"], "name": doc["name"], "contact_id": doc["contact_id"], "company_id": doc.get("company_id") or "",
        "amount": dict(doc["amount"]), "expected_close_date": doc.get("expected_close_date") or "",
        "products": [dict(p) for p in doc.get("products") or []], "pipeline_id": doc["pipeline_id"],
        "stage_id": doc["stage_id"], "status": doc["status"], "probability": probability(doc, pipeline),
        "owner": doc.get("owner") or "", "team": doc.get("team") or "", "lead_id": doc.get("lead_id") or "",
        "stage_history": [{"stage_id": h["stage_id"], "entered_at": clock.to_iso(h["entered_at"]),
                           "left_at": clock.to_iso(h.get("left_at")), "by": h.get("by") or "",
                           "seconds": h["seconds"]} for h in time_in_stages(doc, now)],
        "won": _closed(doc.get("won")), "lost": _closed(doc.get("lost")),
        "reopened": [_closed(r) for r in doc.get("reopened") or []],
        "closed_at": clock.to_iso(doc.get("closed_at")),
        "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
        "updated_at": clock.to_iso(doc["updated_at"]),
    }
