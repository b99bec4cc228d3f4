"""A contact's purchase summary as a pure function of the paid and refunded orders
applied to it: what they bought, when first and last, how many orders, how much per
currency (the transaction data of the 360° view).

``applied`` remembers what each order did to the summary ("paid", then maybe
"refunded"), so applying the same fact twice changes nothing, and a refund that
arrives before its payment (deliveries of two event types are not ordered) is
remembered so the late payment does not count.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

PRODUCTS_KEPT = 200


def empty(contact_id: str) -> dict[str, Any]:
    return {"_id": contact_id, "totals": {}, "order_count": 0, "refunded_count": 0, "first_purchase_at": None,
            "last_purchase_at": None, "products": {}, "applied": {}, "version": 0}


def _products(products: dict[str, Any], lines: list[dict[str, Any]], sign: int, at: datetime) -> dict[str, Any]:
    out = {sku: dict(p) for sku, p in products.items()}
    for line in lines:
        p = out.setdefault(line["sku"], {"sku": line["sku"], "name": line["name"], "quantity": 0, "last_at": at})
        p["quantity"] = max(p["quantity"] + sign * line["quantity"], 0)
        if sign > 0:
            p["name"], p["last_at"] = line["name"], max(p["last_at"], at)
    kept = sorted(out.values(), key=lambda p: (-p["quantity"], p["sku"]))[:PRODUCTS_KEPT]
    return {p["sku"]: p for p in kept}


def apply(summary: dict[str, Any], order: dict[str, Any], fact: str, at: datetime) -> dict[str, Any] | None:
    """The summary after ``fact`` ("paid" or "refunded") of ``order``; None when it
    changes nothing (applied already)."""
    done = summary["applied"].get(order["id"])
    if done == "refunded" or done == fact:
        return None
    out = {**summary, "applied": {**summary["applied"], order["id"]: fact}, "totals": dict(summary["totals"])}
    currency, amount = order["total"]["currency"], int(order["total"]["amount_minor"])
    if fact == "paid":
        out["totals"][currency] = out["totals"].get(currency, 0) + amount
        out["order_count"] += 1
        out["first_purchase_at"] = min(filter(None, (summary["first_purchase_at"], at)))
        out["last_purchase_at"] = max(filter(None, (summary["last_purchase_at"], at)))
        out["products"] = _products(summary["products"], order["lines"], 1, at)
    elif done == "paid":   # a refund of a counted order takes it out again
        out["totals"][currency] = out["totals"].get(currency, 0) - amount
        out["order_count"] -= 1
        out["refunded_count"] += 1
        out["products"] = _products(summary["products"], order["lines"], -1, at)
    else:                  # a refund before its payment was applied: remembered, nothing to take out
        out["refunded_count"] += 1
    return out
