"""The sales team's records as the wire shows them (crm.v1.SalesRep, Territory)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .domain import capacity


def rep_view(doc: dict[str, Any], default_capacity: int) -> dict[str, Any]:
    return {"rep_id": doc["_id"], "display_name": doc.get("display_name") or "", "team": doc["team"],
            "lead_capacity": capacity(doc, default_capacity), "open_leads": int(doc.get("open_leads") or 0),
            "time_zone": doc.get("time_zone") or "", "active": bool(doc.get("active")),
            "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
            "updated_at": clock.to_iso(doc["updated_at"])}


def territory_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"name": doc["_id"], "countries": list(doc.get("countries") or []),
            "regions": list(doc.get("regions") or []), "team": doc["team"], "rank": int(doc.get("rank") or 0)}
