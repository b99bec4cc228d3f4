"""Orders and purchase summaries as the wire shows them (crm.v1.Order, PurchaseSummary)."""
from __future__ import annotations

from typing import Any

from crm_common import clock


def order_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "contact_id": doc["contact_id"], "external_ref": doc["external_ref"],
        "channel": doc["channel"], "currency": doc["currency"],
        "lines": [{"sku": l["sku"], "name": l["name"], "quantity": l["quantity"], "unit_price": dict(l["unit_price"]),
                   "total": dict(l["total"])} for l in doc["lines"]],
        "total": dict(doc["total"]), "status": doc["status"], "deal_id": doc.get("deal_id") or "",
        "status_history": [{"status": h["status"], "at": clock.to_iso(h["at"]), "by": h.get("by") or "",
                            "note": h.get("note") or ""} for h in doc.get("status_history") or []],
        "payment_ref": doc.get("payment_ref") or "", "carrier": doc.get("carrier") or "",
        "tracking_ref": doc.get("tracking_ref") or "",
        **{k: clock.to_iso(doc.get(k)) for k in ("placed_at", "paid_at", "shipped_at", "delivered_at",
                                                  "cancelled_at", "refunded_at")},
        "version": doc["version"], "created_at": clock.to_iso(doc["created_at"]),
        "updated_at": clock.to_iso(doc["updated_at"]),
    }


def summary_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "contact_id": doc["_id"], "order_count": int(doc.get("order_count") or 0),
        "refunded_count": int(doc.get("refunded_count") or 0),
        "totals": [{"amount_minor": v, "currency": c} for c, v in sorted((doc.get("totals") or {}).items())],
        "first_purchase_at": clock.to_iso(doc.get("first_purchase_at")),
        "last_purchase_at": clock.to_iso(doc.get("last_purchase_at")),
        "products": [{"sku": p["sku"], "name": p["name"], "quantity": p["quantity"],
                      "last_bought_at": clock.to_iso(p.get("last_at"))}
                     for p in sorted((doc.get("products") or {}).values(), key=lambda p: (-p["quantity"], p["sku"]))
                     if p["quantity"] > 0],
    }
