"""Order rules as pure functions (no I/O; ``now`` is passed in).

Statuses: ``placed`` -> ``paid`` -> ``shipped`` -> ``delivered``; ``placed`` ->
``cancelled``; ``paid``/``shipped``/``delivered`` -> ``refunded`` (in full). Asking for a
status the order has passed already is a no-op (a retried PayOrder on a shipped order
answers with the order), anything else not on the road is FAILED_PRECONDITION. Every
change is kept in ``status_history`` ("where is my order?").
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common.errors import FailedPrecondition, InvalidArgument
from crm_common.money import MAX_AMOUNT_MINOR

ROAD = ("placed", "paid", "shipped", "delivered")
NEXT = {"placed": ("paid", "cancelled"), "paid": ("shipped", "refunded"), "shipped": ("delivered", "refunded"),
        "delivered": ("refunded",), "cancelled": (), "refunded": ()}
STAMP = {"paid": "paid_at", "shipped": "shipped_at", "delivered": "delivered_at", "cancelled": "cancelled_at",
         "refunded": "refunded_at"}


def priced_lines(lines: list[dict[str, Any]], currency: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The lines with their totals, and the order's total; every price must be in the
    order's currency and no total may exceed what an amount can hold."""
    priced, total = [], 0
    for i, line in enumerate(lines):
        price = line["unit_price"]
        if price["currency"] != currency:
            raise InvalidArgument.field(f"lines[{i}].unit_price.currency",
                                        f"is {price['currency']}, but the order is in {currency}: "
                                        "every line must be in the order's currency")
        amount = price["amount_minor"] * line["quantity"]
        if amount > MAX_AMOUNT_MINOR:
            raise InvalidArgument.field(f"lines[{i}].quantity", f"quantity × unit price exceeds {MAX_AMOUNT_MINOR} "
                                                                "minor units")
        total += amount
        priced.append({**line, "total": {"amount_minor": amount, "currency": currency}})
    if total > MAX_AMOUNT_MINOR:
        raise InvalidArgument.field("lines", f"the order's total exceeds {MAX_AMOUNT_MINOR} minor units")
    return priced, {"amount_minor": total, "currency": currency}


def new_order(order_id: str, req: dict[str, Any], now: datetime, by: str) -> dict[str, Any]:
    lines, total = priced_lines(req["lines"], req["currency"])
    return {"_id": order_id, "contact_id": req["contact_id"], "external_ref": req["external_ref"],
            "channel": req["channel"], "currency": req["currency"], "lines": lines, "total": total,
            "deal_id": req.get("deal_id"), "status": "placed",
            "status_history": [{"status": "placed", "at": now, "by": by, "note": None}],
            "placed_at": now, "created_at": now, "updated_at": now, "version": 1}


def passed(order: dict[str, Any], status: str) -> bool:
    """True when the order is at ``status`` already, or further along the road."""
    current = order["status"]
    return current == status or (current in ROAD and status in ROAD and ROAD.index(current) > ROAD.index(status))


def transition(order: dict[str, Any], status: str, now: datetime, by: str, note: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """The fields moving the order to ``status`` changes; {} when it is there (or past) already."""
    if passed(order, status):
        return {}
    if status not in NEXT[order["status"]]:
        hint = {"shipped": "pay it first", "delivered": "ship it first", "cancelled": "refund it instead",
                "refunded": "cancel it instead"}.get(status, "")
        raise FailedPrecondition(f"order {order['_id']} is {order['status']}: it cannot be {status}"
                                 + (f" ({hint})" if hint and order["status"] not in ("cancelled", "refunded") else ""),
                                 {"order_id": order["_id"], "status": order["status"]})
    record = {"status": status, "at": now, "by": by, "note": note}
    return {"status": status, STAMP[status]: now, **{k: v for k, v in fields.items() if v is not None},
            "status_history": [*(order.get("status_history") or []), record]}
