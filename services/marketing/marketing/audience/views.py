"""The audience of one contact as GetAudienceProfile answers it (crm.v1.AudienceProfile):
who they are for marketing, what they are worth, what they expect, how they engage, and
which segments hold them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from crm_common import clock

from ..audience import value as V
from ..segments.evaluate import Context
from . import facts as F


def profile_view(contact_id: str, doc: dict[str, Any] | None, ctx: Context,
                 segment_names: dict[str, str]) -> dict[str, Any]:
    doc = doc or {}
    contact = doc.get("contact") or {}
    loyalty = doc.get("loyalty") or {}
    purchases = doc.get("purchases") or {}
    engagement = doc.get("engagement") or {}
    f = F.project(doc)
    return {
        "contact_id": contact_id,
        "version": doc.get("version", 0),
        "known": bool(doc),
        "erased": bool(doc.get("erased")),
        "display_name": contact.get("display_name") or "",
        "emails": [contact["email"]] if contact.get("email") else [],
        "phones": [contact["phone"]] if contact.get("phone") else [],
        "consents": {ch: {"granted": bool(c.get("granted")), "at": clock.to_iso(c.get("at"))}
                     for ch, c in (doc.get("consents") or {}).items()},
        "value": {
            "tier": loyalty.get("tier") or "none", "points": int(loyalty.get("balance") or 0),
            "loyalty_member": bool(loyalty.get("member")),
            "order_count": max(int(purchases.get("order_count") or 0), len(f["ro"])),
            "total_spent": [{"amount_minor": v, "currency": k} for k, v in sorted(V.spent(f).items())],
            "first_order_at": clock.to_iso(purchases.get("first_at")),
            "last_order_at": clock.to_iso(_at(f.get("lo"))),
            "rfm_recency": V.recency(f, ctx.now_s), "rfm_frequency": V.frequency(f),
            "rfm_monetary": V.monetary(f, ctx.bands), "value_band": V.value_band(f, ctx.bands),
        },
        "service": {"open_tickets": f["ot"], "last_csat": f["cq"]},
        "expectations": {k: {"value": e["value"] if isinstance(e["value"], str) else ",".join(e["value"]),
                             "source": e["source"], "at": clock.to_iso(e["at"])}
                         for k, e in (doc.get("expectations") or {}).items()},
        "engagement": {"score": int(engagement.get("score") or 0),
                       "last_opened_at": clock.to_iso(engagement.get("last_opened")),
                       "last_clicked_at": clock.to_iso(engagement.get("last_clicked")),
                       "qualified_at": clock.to_iso(engagement.get("qualified_at")),
                       "history": [history_view(h) for h in engagement.get("history") or []]},
        "segments": [{"segment_id": sid, "name": segment_names.get(sid, ""), "kind": m.get("kind", ""),
                      "since": clock.to_iso(m.get("since"))}
                     for sid, m in sorted((doc.get("segments") or {}).items())],
    }


def history_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {"at": clock.to_iso(entry["at"]), "kind": entry["kind"], "message_id": entry["message_id"],
            "campaign_id": entry["campaign_id"], "channel": entry["channel"], "link": entry.get("link") or ""}


def _at(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
