"""The engagement score and the lead handoff, as pure rules.

The score is the sum of the weights of what the contact did with our messages within the
scoring window (opens, clicks, replies; the bounded history of the audience document).
When an engagement lifts the score from below the threshold to the threshold or above,
the contact is handed to sales as a qualified lead (``lead_qualified``), at most once per
cool-down: a contact who keeps clicking is not handed over again every day.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DEFAULT_WEIGHTS = {"opened": 1, "clicked": 3, "replied": 5}


@dataclass(frozen=True)
class ScoringPolicy:
    threshold: int = 10
    window: timedelta = timedelta(days=90)
    cooldown: timedelta = timedelta(days=30)
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


def score(history: list[dict[str, Any]], now: datetime, policy: ScoringPolicy) -> int:
    """What the contact did within the window, weighted (an open counts once per message:
    mail clients load the pixel again and again)."""
    since = now - policy.window
    opened: set[str] = set()
    total = 0
    for entry in history:
        if entry["at"] < since:
            continue
        if entry["kind"] == "opened":
            if entry["message_id"] in opened:
                continue
            opened.add(entry["message_id"])
        total += policy.weights.get(entry["kind"], 0)
    return total


def crossed(before: int, after: int, last_qualified: datetime | None, now: datetime, policy: ScoringPolicy) -> bool:
    """Whether this change hands the contact to sales."""
    if not before < policy.threshold <= after:
        return False
    return last_qualified is None or now - last_qualified >= policy.cooldown
