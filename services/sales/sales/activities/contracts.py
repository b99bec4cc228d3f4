"""What the activity RPCs accept (tasks, calls and meetings; crm.v1.SalesService)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from crm_common.contracts import Command, Id, OptText, Page, Request, Text, Timestamp, Tolerant

from ..common import OptOwner, OptTimeZone

KINDS = ("task", "call", "meeting")
STATUSES = ("open", "done", "cancelled")
VIEWS = ("all", "overdue", "today", "upcoming")


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


class Regarding(Tolerant):
    """The lead, deal or contact an activity is about."""

    type: Literal["lead", "deal", "contact"]
    id: Id


class ActivityIn(Tolerant):
    kind: Literal["task", "call", "meeting"]
    subject: Text(200, required=True)
    notes: OptText(4000) = None
    due_at: Timestamp
    regarding: Regarding | None = None
    owner: OptOwner = None


class CreateActivity(Command):
    """An activity for ``owner`` (the caller by default), due at ``due_at``: its owner is
    reminded then (the ``activity_due`` event)."""

    activity: ActivityIn


class GetActivity(Request):
    activity_id: Id


class ListActivities(Request, Page):
    """An owner's activities (the caller's by default): ``view`` overdue (open, due before
    now), today (open, due today in ``time_zone``: the owner's in the sales team
    directory, else UTC), upcoming (open, due after today), all (any status, or
    ``status``). Sorted by due time."""

    owner: OptOwner = None
    view: Annotated[Literal["all", "overdue", "today", "upcoming"], BeforeValidator(lambda v: v or "all")] = "all"
    time_zone: OptTimeZone = None
    status: Annotated[Literal["open", "done", "cancelled"] | None, BeforeValidator(_none_if_empty)] = None


class CompleteActivity(Command):
    activity_id: Id
    outcome: OptText(1000) = None


class CancelActivity(Command):
    activity_id: Id
    reason: OptText(500) = None


class RescheduleActivity(Command):
    """A new due time (its reminder fires again then)."""

    activity_id: Id
    due_at: Timestamp
