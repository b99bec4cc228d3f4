"""What the audience RPCs accept (crm.v1.MarketingService: GetAudienceProfile,
RecordSurveyAnswers; rebuild_audience is internal)."""
from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field

from crm_common.contracts import Command, Id, Page, Request, Text, error

from ..segments.rules import CHANNELS, CONTACT_TIMES, VALUES


def _empty_to_none(value):
    return None if value == "" else value


def _time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 64:
        raise error("time_zone", "must be an IANA time zone such as Asia/Tehran or Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise error("time_zone", "must be an IANA time zone such as Asia/Tehran or Europe/Berlin") from None
    return value


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values))


class GetAudienceProfile(Request):
    contact_id: Id


class RecordSurveyAnswers(Command):
    """What the customer said they expect; an answer left empty changes nothing."""

    contact_id: Id
    survey: Text(100, required=True)
    preferred_channel: Annotated[Literal[CHANNELS] | None, BeforeValidator(_empty_to_none)] = None
    preferred_contact_time: Annotated[Literal[CONTACT_TIMES] | None, BeforeValidator(_empty_to_none)] = None
    values: Annotated[list[Literal[VALUES]], Field(max_length=len(VALUES)), AfterValidator(_unique)] = []
    timezone: Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_time_zone)] = None


class RebuildAudience(Request, Page):
    """Internal: one page of one step of rebuilding the audience from the producers'
    records (audience.rebuild); pass ``next_page_token`` back until ``done``. ``reset``
    (honoured on the first call) drops what the audience holds first; without it the
    records are merged in, the newest fact winning."""

    reset: bool = False
