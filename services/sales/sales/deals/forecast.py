"""Forecast and sales reports as pure functions over deals (no I/O).

Money is never summed across currencies: every figure is per currency. A weighted
amount is the amount times the stage's probability, in integer minor units (rounded
half up).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable

from .domain import LOST, OPEN, WON, probability

UNSCHEDULED = ""          # the month of an open deal without an expected close date
OVERDUE = "overdue"       # ... of one expected before the forecast's first month


def weighted(amount_minor: int, percent: int) -> int:
    return (amount_minor * percent + 50) // 100


def months_from(first: str, count: int) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


def _rows(groups: dict[tuple, list[int]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for group, (count, amount, weight) in sorted(groups.items()):
        *named, currency = group
        out.append({**dict(zip(keys, named)), "currency": currency, "deals": count,
                    "amount": _money(amount, currency), "weighted": _money(weight, currency)})
    return out


def forecast(deals: Iterable[dict[str, Any]], pipelines: dict[str, dict[str, Any]], months: list[str]
             ) -> dict[str, Any]:
    """Open deals' weighted pipeline by expected-close month (within ``months``; earlier
    ones as ``overdue``, undated ones as ``""``), by owner, and in total, per currency."""
    by_month: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_owner: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    window = set(months)
    for deal in deals:
        if deal["status"] != OPEN:
            continue
        month = (deal.get("expected_close_date") or "")[:7]
        if month and month not in window:
            if months and month < months[0]:
                month = OVERDUE
            else:
                continue  # beyond the window
        currency, amount = deal["amount"]["currency"], int(deal["amount"]["amount_minor"])
        weight = weighted(amount, probability(deal, pipelines.get(deal["pipeline_id"])))
        for groups, key in ((by_month, (month, currency)), (by_owner, (deal.get("owner") or "", currency)),
                            (totals, (currency,))):
            row = groups[key]
            row[0] += 1
            row[1] += amount
            row[2] += weight
    return {"by_month": _rows(by_month, ("month",)), "by_owner": _rows(by_owner, ("owner",)),
            "totals": _rows(totals, ())}


def _stage_ids(deal: dict[str, Any]) -> set[str]:
    return {h["stage_id"] for h in deal.get("stage_history") or []}


def report(deals: list[dict[str, Any]], pipeline: dict[str, Any] | None) -> dict[str, Any]:
    """Win rate (won / closed), won amounts and their average per currency, the sales cycle
    (days from creation to winning), lost reasons, and the conversion between the stages
    of ``pipeline`` (of the deals that were ever in a stage, how many got further)."""
    won = [d for d in deals if d["status"] == WON]
    lost = [d for d in deals if d["status"] == LOST]
    amounts: dict[str, list[int]] = defaultdict(list)
    for d in won:
        amounts[d["amount"]["currency"]].append(int(d["amount"]["amount_minor"]))
    cycle = [(d["closed_at"] - d["created_at"]).total_seconds() / 86400 for d in won if d.get("closed_at")]
    reasons: dict[str, int] = defaultdict(int)
    for d in lost:
        reasons[(d.get("lost") or {}).get("reason") or "other"] += 1
    conversion = []
    if pipeline:
        order = [s["id"] for s in pipeline["stages"]]
        in_pipeline = [d for d in deals if d["pipeline_id"] == pipeline["_id"]]
        for i, stage in enumerate(pipeline["stages"]):
            later = set(order[i + 1:]) | {WON}
            entered = [d for d in in_pipeline if stage["id"] in _stage_ids(d)]
            advanced = [d for d in entered if _stage_ids(d) & later]
            conversion.append({"stage_id": stage["id"], "name": stage["name"], "entered": len(entered),
                               "advanced": len(advanced),
                               "rate": round(len(advanced) / len(entered), 4) if entered else 0.0})
    closed = len(won) + len(lost)
    return {
        "deals": len(deals), "open": sum(1 for d in deals if d["status"] == OPEN), "won": len(won), "lost": len(lost),
        "win_rate": round(len(won) / closed, 4) if closed else 0.0,
        "won_amount": [_money(sum(v), c) for c, v in sorted(amounts.items())],
        "average_won_amount": [_money(round(sum(v) / len(v)), c) for c, v in sorted(amounts.items())],
        "sales_cycle_days_average": round(statistics.fmean(cycle), 2) if cycle else 0.0,
        "sales_cycle_days_median": round(statistics.median(cycle), 2) if cycle else 0.0,
        "lost_reasons": [{"reason": r, "deals": n} for r, n in sorted(reasons.items(), key=lambda x: (-x[1], x[0]))],
        "stage_conversion": conversion,
    }


def this_month(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def open_value(deals: Iterable[dict[str, Any]], pipelines: dict[str, dict[str, Any]]
               ) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
    """Open deals' amounts by ``(pipeline, stage, currency)``, and weighted by currency."""
    value: dict[tuple[str, str, str], int] = defaultdict(int)
    weights: dict[str, int] = defaultdict(int)
    for deal in deals:
        if deal["status"] != OPEN:
            continue
        currency, amount = deal["amount"]["currency"], int(deal["amount"]["amount_minor"])
        value[(deal["pipeline_id"], deal["stage_id"], currency)] += amount
        weights[currency] += weighted(amount, probability(deal, pipelines.get(deal["pipeline_id"])))
    return dict(value), dict(weights)
