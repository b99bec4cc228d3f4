"""Activity rules as pure functions (no I/O; ``now`` is passed in).

An activity is ``open`` until ``done`` or ``cancelled``. While open and not yet
reminded it carries ``reminder_at`` (= its due time): the reminder timer finds it by an
index range on that field, and the guarded write that announces the reminder also
clears it, so the reminder is published once however many replicas run the timer.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm_common.errors import FailedPrecondition

OPEN, DONE, CANCELLED = "open", "done", "cancelled"


def new_activity(activity_id: str, fields: dict[str, Any], owner: str, team: str, contact_id: str | None,
                 now: datetime) -> dict[str, Any]:
    return {"_id": activity_id, "kind": fields["kind"], "subject": fields["subject"], "notes": fields.get("notes"),
            "due_at": fields["due_at"], "reminder_at": fields["due_at"], "reminded_at": None,
            "regarding": fields.get("regarding"), "contact_id": contact_id, "owner": owner, "team": team,
            "status": OPEN, "outcome": None, "completed_at": None, "cancel_reason": None,
            "created_at": now, "updated_at": now, "version": 1}


def _require_open(activity: dict[str, Any], action: str) -> None:
    if activity["status"] != OPEN:
        raise FailedPrecondition(f"activity {activity['_id']} is {activity['status']}: it cannot be {action}",
                                 {"activity_id": activity["_id"], "status": activity["status"]})


def complete(activity: dict[str, Any], outcome: str | None, now: datetime) -> dict[str, Any]:
    _require_open(activity, "completed")
    return {"status": DONE, "outcome": outcome, "completed_at": now, "reminder_at": None}


def cancel(activity: dict[str, Any], reason: str | None, now: datetime) -> dict[str, Any]:
    _require_open(activity, "cancelled")
    return {"status": CANCELLED, "cancel_reason": reason, "completed_at": now, "reminder_at": None}


def reschedule(activity: dict[str, Any], due_at: datetime) -> dict[str, Any]:
    _require_open(activity, "rescheduled")
    return {"due_at": due_at, "reminder_at": due_at, "reminded_at": None}


def day_bounds(now: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of ``now``'s day in ``time_zone``, as aware datetimes."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    start = datetime.combine(local.date(), time.min, tzinfo=zone)
    end = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def in_view(activity: dict[str, Any], view: str, now: datetime, today: tuple[datetime, datetime]) -> bool:
    """overdue: open, due before now; today: open, due during today (those due earlier
    today are overdue too); upcoming: open, due after today; all: everything."""
    if view == "all":
        return True
    if activity["status"] != OPEN:
        return False
    due = activity["due_at"]
    if view == "overdue":
        return due < now
    if view == "today":
        return today[0] <= due < today[1]
    return due >= today[1]   # upcoming
