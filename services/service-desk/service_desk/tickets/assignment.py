"""Who gets a ticket: its group by the routing rules, then an agent of the group by
round-robin under a cap of open tickets. Pure: the store claims the chosen agent's
capacity with a guarded increment (``open_count < max_open``), so two tickets racing for
an agent's last slot cannot both get it.

Routing: a group takes the categories and channels it lists. The ticket goes to the
group that lists both its category and its channel, else its category, else its
channel, else the default group (ties: the group id, alphabetically).

Round-robin: of the group's agents who are available and under their cap, the one who
was given a ticket longest ago (never = first; ties by id). No pointer is shared between
replicas: each assignment moves the agent's ``last_assigned_at``, which is the order.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

EPOCH = datetime.min


def route(groups: Iterable[dict[str, Any]], category: str, channel: str, default_group: str) -> str:
    def score(g: dict[str, Any]) -> int:
        by_category, by_channel = category in (g.get("categories") or ()), channel in (g.get("channels") or ())
        return 3 if by_category and by_channel else 2 if by_category else 1 if by_channel else 0

    ranked = sorted(((score(g), g["_id"]) for g in groups), key=lambda sg: (-sg[0], sg[1]))
    return ranked[0][1] if ranked and ranked[0][0] > 0 else default_group


def candidates(agents: Iterable[dict[str, Any]], group: str, default_cap: int) -> list[dict[str, Any]]:
    """The group's agents who may take one more ticket now, in round-robin order."""
    def last(a: dict[str, Any]) -> tuple:
        at = a.get("last_assigned_at")
        return (at.replace(tzinfo=None) if at else EPOCH, a["_id"])

    ready = [a for a in agents if group in (a.get("groups") or ()) and a.get("available")
             and int(a.get("open_count") or 0) < cap_of(a, default_cap)]
    return sorted(ready, key=last)


def cap_of(agent: dict[str, Any], default_cap: int) -> int:
    return int(agent.get("max_open") or default_cap)
