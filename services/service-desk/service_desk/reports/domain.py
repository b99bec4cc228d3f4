"""Service reports computed from tickets, pure (the database cannot group by several
keys with several accumulators here, and the tickets of a period are few enough).

* SLA met %: per target, of the tickets whose clock has a verdict: met (stopped within
  target) or missed (a breach published, or stopped late). Tickets still counting
  within their target are not judged yet. By tier, priority (the one the targets are
  for), group and agent.
* Times: median and 90th percentile (nearest rank) of the first response and resolution
  times, in business seconds as the SLA counts them (pauses on the customer excluded),
  of the tickets that have one.
* CSAT: responses, average score and the share of 4s and 5s, by tier and by channel.
* Top categories: tickets per category, most first.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from typing import Any, Iterable

from ..sla.clocks import FIRST_RESPONSE, RESOLUTION, TARGETS, Sla

NONE = "(none)"


def verdict(sla: Sla, target: str) -> bool | None:
    clock = sla.clock(target)
    if clock.target is None:
        return None
    if clock.breached:
        return False
    return clock.met


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _sla_rows(tickets: list[dict[str, Any]], key) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: {t: Counter() for t in TARGETS})
    for ticket in tickets:
        sla = Sla.from_doc(ticket.get("sla"))
        row = counts[key(ticket, sla) or NONE]
        for target in TARGETS:
            v = verdict(sla, target)
            if v is not None:
                row[target]["met" if v else "missed"] += 1
    return [{"key": k, **{t: {"met": c[t]["met"], "missed": c[t]["missed"],
                              "percent": _percent(c[t]["met"], c[t]["met"] + c[t]["missed"])} for t in TARGETS}}
            for k, c in sorted(counts.items())]


def quantiles(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "median": 0.0, "p90": 0.0}
    return {"count": len(ordered), "median": round(float(statistics.median(ordered)), 3),
            "p90": round(float(ordered[math.ceil(0.9 * len(ordered)) - 1]), 3)}


def _csat_rows(tickets: list[dict[str, Any]], key) -> list[dict[str, Any]]:
    scores: dict[str, list[int]] = defaultdict(list)
    for ticket in tickets:
        if ticket.get("csat"):
            scores[key(ticket) or NONE].append(int(ticket["csat"]["score"]))
    return [{"key": k, "responses": len(v), "average": round(sum(v) / len(v), 2),
             "satisfied_percent": _percent(sum(1 for s in v if s >= 4), len(v))} for k, v in sorted(scores.items())]


def report(tickets: list[dict[str, Any]], backlog: dict[str, int]) -> dict[str, Any]:
    """The report of ``tickets`` (those opened in the period), with the current
    ``backlog`` (open tickets by status)."""
    times = {t: [] for t in TARGETS}
    for ticket in tickets:
        sla = Sla.from_doc(ticket.get("sla"))
        for target in TARGETS:
            if sla.clock(target).stopped and (target == FIRST_RESPONSE and ticket.get("first_response_at")
                                              or target == RESOLUTION and ticket.get("resolved_at")):
                times[target].append(sla.clock(target).elapsed)
    categories = Counter(t["category"] for t in tickets)
    return {
        "tickets": len(tickets),
        "sla_by_tier": _sla_rows(tickets, lambda t, s: s.tier),
        "sla_by_priority": _sla_rows(tickets, lambda t, s: s.priority),
        "sla_by_group": _sla_rows(tickets, lambda t, s: t.get("group")),
        "sla_by_agent": _sla_rows(tickets, lambda t, s: t.get("assignee")),
        "first_response_seconds": quantiles(times[FIRST_RESPONSE]),
        "resolution_seconds": quantiles(times[RESOLUTION]),
        "backlog": [{"status": s, "count": n} for s, n in backlog.items()],
        "csat_by_tier": _csat_rows(tickets, lambda t: Sla.from_doc(t.get("sla")).tier),
        "csat_by_channel": _csat_rows(tickets, lambda t: t.get("channel")),
        "top_categories": [{"category": c, "count": n} for c, n in sorted(categories.items(),
                                                                          key=lambda cn: (-cn[1], cn[0]))],
    }
