"""Lead assignment rules as pure functions: which territory a lead falls in, and in which
order a team's salespeople take their turn (round-robin). Capacity is enforced by the
store with one guarded increment per rep (team/store.py), so it holds across replicas."""
from __future__ import annotations

import unicodedata
from typing import Any, Iterable

DEFAULT_CAPACITY = 50
ANY_COUNTRY = "*"


def region_key(region: str | None) -> str:
    """Regions compare case- and accent-insensitively ("Île-de-France" = "ile-de-france")."""
    text = unicodedata.normalize("NFKD", region or "")
    return "".join(ch for ch in text if not unicodedata.combining(ch)).casefold().strip()


def territory_for(country: str | None, region: str | None,
                  territories: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The first territory (by rank, then name) whose countries include ``country`` (or
    "*") and, when it lists regions, whose regions include ``region``."""
    for territory in sorted(territories, key=lambda t: (t.get("rank", 0), t["_id"])):
        countries = territory.get("countries") or []
        if not (ANY_COUNTRY in countries or (country and country in countries)):
            continue
        regions = {region_key(r) for r in territory.get("regions") or []}
        if regions and region_key(region) not in regions:
            continue
        return territory
    return None


def turn_order(reps: list[dict[str, Any]], turn: int) -> list[dict[str, Any]]:
    """The team's active reps in the order they are offered the ``turn``-th lead: sorted
    by id, starting at ``turn`` modulo their number (round-robin)."""
    active = sorted((r for r in reps if r.get("active", True)), key=lambda r: r["_id"])
    if not active:
        return []
    start = turn % len(active)
    return active[start:] + active[:start]


def capacity(rep: dict[str, Any], default: int = DEFAULT_CAPACITY) -> int:
    return int(rep.get("lead_capacity") or default)
