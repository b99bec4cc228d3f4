"""What the SLA and routing configuration RPCs accept: calendars, policies, groups, agents."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from crm_common.contracts import Command, Id, Model, OptId, Request, Text, Tolerant, error

from ..tickets.contracts import Category, Channel, PriorityIn
from . import calendar as cal
from .policies import PRIORITIES

Day = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Tier = Literal["bronze", "silver", "gold", "platinum"]
Segment = Literal["none", "low", "medium", "high"]
MAX_TARGET_SECONDS = 366 * 86_400


def _time_zone(value: str) -> str:
    try:
        cal.zone(value)
    except ValueError:
        raise error("time_zone", "must be an IANA time zone such as Europe/Berlin or Asia/Tehran") from None
    return value


def _day(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise error("date", "must be a date YYYY-MM-DD") from None
    if len(value) != 10:
        raise error("date", "must be a date YYYY-MM-DD")
    return value


def _clock(end: bool):
    def check(value: str) -> str:
        try:
            cal.parse_clock(value, end=end)
        except ValueError as exc:
            raise error("time", str(exc)) from None
        return value
    return check


class OpeningHours(Model):
    """One open interval of a weekday, local time: ``opens`` 00:00-23:59, ``closes``
    after it, up to 24:00."""

    day: Day
    opens: Annotated[str, AfterValidator(_clock(False))]
    closes: Annotated[str, AfterValidator(_clock(True))]

    @field_validator("closes")
    @classmethod
    def _after_opening(cls, value: str, info: ValidationInfo) -> str:
        opens = info.data.get("opens")
        if opens and cal.parse_clock(value, end=True) <= cal.parse_clock(opens):
            raise error("hours", "must be after opens (split a night shift at midnight)")
        return value


class CalendarIn(Tolerant):
    """Weekly opening hours in a time zone, and the holidays (local dates) it is closed."""

    id: Id
    name: Text(100, required=True)
    time_zone: Annotated[Text(64, required=True), AfterValidator(_time_zone)]
    hours: list[OpeningHours] = Field(min_length=1, max_length=70)
    holidays: list[Annotated[str, AfterValidator(_day)]] = Field(default_factory=list, max_length=1000)


class SaveCalendar(Command):
    """Creates or replaces the calendar ``calendar.id``."""

    calendar: CalendarIn


class ListCalendars(Request):
    pass


class TargetIn(Model):
    """The targets for one priority, in business seconds of the policy's calendar."""

    priority: PriorityIn
    first_response_seconds: int = Field(ge=1, le=MAX_TARGET_SECONDS)
    resolution_seconds: int = Field(ge=1, le=MAX_TARGET_SECONDS)


class PolicyIn(Tolerant):
    """Applies to customers whose tier is in ``tiers`` (empty: any) and whose value
    segment is in ``segments`` (empty: any); ``targets`` has one entry per priority;
    ``calendar_id`` "" counts every hour; ``warning_percent`` 0 = the default (80)."""

    id: Id
    name: Text(100, required=True)
    tiers: list[Tier] = Field(default_factory=list, max_length=4)
    segments: list[Segment] = Field(default_factory=list, max_length=4)
    calendar_id: OptId = None
    warning_percent: int = Field(0, ge=0, le=99)
    targets: list[TargetIn] = Field(min_length=len(PRIORITIES), max_length=len(PRIORITIES))

    @field_validator("targets")
    @classmethod
    def _each_priority_once(cls, value: list[TargetIn]) -> list[TargetIn]:
        if sorted(t.priority for t in value) != sorted(PRIORITIES):
            raise error("targets", f"needs exactly one entry for each priority ({', '.join(PRIORITIES)})")
        return value


class SaveSlaPolicy(Command):
    """Creates or replaces the policy ``policy.id``; tickets opened from now on use it
    (open tickets are re-targeted when their customer's tier or value changes)."""

    policy: PolicyIn


class ListSlaPolicies(Request):
    pass


class GroupIn(Tolerant):
    """A group of agents (its id is the team its agents' tokens carry) and the tickets
    it takes: ``categories`` and ``channels`` (crm.v1 routing rules)."""

    id: Id
    name: Text(100, required=True)
    categories: list[Category] = Field(default_factory=list, max_length=20)
    channels: list[Channel] = Field(default_factory=list, max_length=10)
    escalation_group: OptId = None


class SaveGroup(Command):
    group: GroupIn


class ListGroups(Request):
    pass


class AgentIn(Tolerant):
    """An agent (``id`` is the principal's id, e.g. agent-neda), the groups they work
    in, whether they take tickets now, and their cap of open tickets (0 = the default)."""

    id: Id
    name: Text(100, required=True)
    groups: list[Id] = Field(default_factory=list, max_length=20)
    available: bool = True
    max_open: int = Field(0, ge=0, le=10_000)


class SaveAgent(Command):
    agent: AgentIn


class SetAgentAvailability(Command):
    agent_id: Id
    available: bool


class ListAgents(Request):
    group: OptId = None
