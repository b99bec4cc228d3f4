"""What the contacts service answers with: stored documents shaped as the wire form
(docs/rpc.md; the fields of crm.v1.Contact, Company and TimelineEntry)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .contracts import CONSENT_CHANNELS
from .domain import WRITABLE_FIELDS


def contact_view(doc: dict[str, Any]) -> dict[str, Any]:
    out = {"id": doc["_id"], "version": doc["version"],
           "created_at": clock.to_iso(doc["created_at"]), "updated_at": clock.to_iso(doc["updated_at"])}
    for key in WRITABLE_FIELDS:
        out[key] = doc.get(key)
    out["given_name"] = out["given_name"] or ""
    out["family_name"] = out["family_name"] or ""
    out["emails"] = [dict(e) for e in doc.get("emails") or []]
    out["phones"] = [dict(p) for p in doc.get("phones") or []]
    out["tags"] = list(doc.get("tags") or [])
    out["custom_fields"] = dict(doc.get("custom_fields") or {})
    consents = doc.get("consents") or {}
    out["consents"] = {
        ch: {"granted": bool((consents.get(ch) or {}).get("granted")),
             "source": (consents.get(ch) or {}).get("source"),
             "at": clock.to_iso((consents.get(ch) or {}).get("at"))}
        for ch in CONSENT_CHANNELS}
    out["erased"] = bool(doc.get("erased"))
    return out


def company_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "domain": doc.get("domain"), "tags": list(doc.get("tags") or []),
            "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
            "updated_at": clock.to_iso(doc["updated_at"])}


def entry_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "contact_id": doc["contact_id"], "kind": doc["kind"], "channel": doc["channel"],
            "direction": doc["direction"], "summary": doc["summary"],
            "occurred_at": clock.to_iso(doc["occurred_at"]), "source": doc["source"],
            "reference": doc.get("reference"), "data": doc.get("data") or {},
            "logged_by": doc.get("logged_by") or "", "request_id": doc.get("request_id") or ""}
