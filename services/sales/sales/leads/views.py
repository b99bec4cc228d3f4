"""Leads as the wire shows them (crm.v1.Lead, ScoringRules)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .domain import PERSON_FIELDS


def _at(record: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in record.items() if k != "ref"}, "at": clock.to_iso(record.get("at"))}


def lead_view(doc: dict[str, Any]) -> dict[str, Any]:
    conversion = doc.get("conversion") or {}
    disqualified = doc.get("disqualified") or {}
    return {
        "id": doc["_id"], "status": doc["status"], **{k: doc.get(k) for k in PERSON_FIELDS},
        "company_size": int(doc.get("company_size") or 0), "notes": doc.get("notes"),
        "channel": doc["channel"], "attribution": dict(doc.get("attribution") or {}),
        "touches": [_at(t) for t in doc.get("touches") or []],
        "owner": doc.get("owner") or "", "team": doc.get("team") or "",
        "score": int(doc.get("score") or 0), "grade": doc.get("grade") or "",
        "score_details": list(doc.get("score_details") or []),
        "behaviour": dict(doc.get("behaviour") or {}),
        "history": [_at(h) for h in doc.get("history") or []],
        "assignments": [_at(a) for a in doc.get("assignments") or []],
        "contact_id": doc.get("contact_id") or "",
        "disqualify_reason": disqualified.get("reason") or "", "disqualify_note": disqualified.get("note") or "",
        "conversion": {"contact_id": conversion.get("contact_id") or "", "company_id": conversion.get("company_id") or "",
                       "deal_id": conversion.get("deal_id") or "",
                       "converted_at": clock.to_iso(conversion.get("converted_at"))} if conversion else None,
        "erased": bool(doc.get("erased")),
        "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
        "updated_at": clock.to_iso(doc["updated_at"]),
    }


def brief_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What a caller learns of an open lead outside its scope that their capture merged
    into: that it exists, and whose it is."""
    return {"id": doc["_id"], "status": doc["status"], "owner": doc.get("owner") or "", "team": doc.get("team") or "",
            "channel": doc["channel"], "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
            "updated_at": clock.to_iso(doc["updated_at"])}


def rules_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"rules": [{**r, "values": list(r.get("values") or [])} for r in doc.get("rules") or []],
            "grades": list(doc.get("grades") or []), "version": int(doc.get("version") or 0),
            "updated_at": clock.to_iso(doc.get("updated_at"))}
