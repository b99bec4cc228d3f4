"""Which SLA policy serves a ticket, and the customer facts it depends on. Pure.

A policy applies to a customer when its ``tiers`` list is empty or holds the customer's
loyalty tier, AND its ``segments`` list is empty or holds the customer's value segment.
Of the policies that apply, the ticket gets the one with the tightest targets for its
priority (resolution first, then first response, then the policy id): a customer gets
the best service any of their qualities earns (a bronze member with a high lifetime
value gets what high value gets). No policy applies: no targets, no clocks to breach.

Value segments are bands of lifetime revenue per currency (``SERVICE_DESK_VALUE_BANDS``,
e.g. ``EUR:50000:500000`` = medium from EUR 500.00, high from EUR 5,000.00, in minor
units). A customer's segment is the highest band any ONE currency's total reaches:
totals in different currencies are never added up. ``none`` = no purchases.
"""
from __future__ import annotations

from typing import Any, Iterable

TIERS = ("bronze", "silver", "gold", "platinum")
SEGMENTS = ("none", "low", "medium", "high")
PRIORITIES = ("low", "normal", "high", "urgent")


def applies(policy: dict[str, Any], tier: str, segment: str) -> bool:
    tiers, segments = policy.get("tiers") or [], policy.get("segments") or []
    return (not tiers or tier in tiers) and (not segments or segment in segments)


def choose(policies: Iterable[dict[str, Any]], tier: str, segment: str, priority: str) -> dict[str, Any] | None:
    """The policy for a ticket of ``priority`` from a customer of ``tier`` / ``segment``."""
    def tightness(p: dict[str, Any]):
        t = targets(p, priority)
        return (t["resolution_seconds"], t["first_response_seconds"], p["_id"])

    candidates = [p for p in policies if applies(p, tier, segment) and targets(p, priority)]
    return min(candidates, key=tightness) if candidates else None


def targets(policy: dict[str, Any] | None, priority: str) -> dict[str, int] | None:
    """``{first_response_seconds, resolution_seconds}`` of ``policy`` for ``priority``."""
    if policy is None:
        return None
    for t in policy.get("targets") or ():
        if t.get("priority") == priority:
            return t
    return None


def parse_bands(text: str) -> dict[str, tuple[int, int]]:
    """``"EUR:50000:500000,USD:50000:500000"`` -> ``{"EUR": (50000, 500000), ...}``
    (minor units from which a total is medium, and high). ValueError when malformed."""
    bands: dict[str, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        currency, medium, high = part.split(":")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ValueError(f"value bands: {currency!r} is not a currency code")
        bands[currency] = (int(medium), int(high))
        if not 0 < bands[currency][0] <= bands[currency][1]:
            raise ValueError(f"value bands: {part!r} needs 0 < medium <= high")
    return bands


def segment_for(totals: Iterable[dict[str, Any]], bands: dict[str, tuple[int, int]]) -> str:
    """The value segment of a customer whose lifetime totals are ``totals``
    (``[{amount_minor, currency}]``, one per currency)."""
    best, seen = 0, False
    for total in totals or ():
        amount, currency = total.get("amount_minor"), total.get("currency")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            continue
        seen = True
        medium, high = bands.get(currency, (None, None))
        rank = 1 if medium is None or amount < medium else 2 if amount < high else 3
        best = max(best, rank)
    return SEGMENTS[best] if seen else "none"
