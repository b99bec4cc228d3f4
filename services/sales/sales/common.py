"""Field types and rules every area of the sales service shares."""
from __future__ import annotations

import re
from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

from crm_common import contact_points
from crm_common.contracts import error

_OWNER = re.compile(r"^[A-Za-z0-9._@:+-]{1,100}$")
_TEAM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _empty_to_none(value):
    return None if value == "" else value


def _owner(value: str) -> str:
    if not _OWNER.match(value):
        raise error("owner", "must be a person's id: 1 to 100 of letters, digits and . _ @ : + -")
    return value


def _team(value: str) -> str:
    value = value.strip().lower()
    if not _TEAM.match(value):
        raise error("team", "must be a team name: 1 to 50 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    return value


def _country(value: str) -> str:
    value = value.strip().upper()
    if not _COUNTRY.match(value):
        raise error("country", "must be an ISO 3166 two-letter country code such as IR or DE")
    return value


def _date(value: str) -> str:
    if not _DATE.match(value):
        raise error("date", "must be a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise error("date", "is not a valid calendar date") from None
    if not 1900 <= day.year <= 9999:
        raise error("date", "must be between the years 1900 and 9999")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise error("time_zone", "must be an IANA time zone such as Asia/Tehran or Europe/Berlin") from None
    return value


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise error("slug", "must be 1 to 40 of a-z, 0-9 and '_', starting with a letter")
    return value


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return contact_points.normalize_email(value)
    except ValueError as exc:
        raise error("email", str(exc)) from None


#: A salesperson's id: what records store as their ``owner`` (the principal's id).
Owner = Annotated[str, AfterValidator(_owner), Field(json_schema_extra={"pattern": _OWNER.pattern})]
OptOwner = Annotated[Owner | None, BeforeValidator(_empty_to_none)]
Team = Annotated[str, AfterValidator(_team), Field(json_schema_extra={"pattern": _TEAM.pattern})]
OptTeam = Annotated[Team | None, BeforeValidator(_empty_to_none)]
Country = Annotated[str, AfterValidator(_country), Field(json_schema_extra={"pattern": "^[A-Za-z]{2}$"})]
OptCountry = Annotated[Country | None, BeforeValidator(_empty_to_none)]
Day = Annotated[str, AfterValidator(_date), Field(json_schema_extra={"format": "date"})]
OptDay = Annotated[Day | None, BeforeValidator(_empty_to_none)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
OptTimeZone = Annotated[TimeZone | None, BeforeValidator(_empty_to_none)]
Slug = Annotated[str, AfterValidator(_slug), Field(json_schema_extra={"pattern": _SLUG.pattern})]
OptEmail = Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_email)]


def _phone(value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    try:
        return contact_points.normalize_phone(value, (info.context or {}).get("default_country_code"))
    except ValueError as exc:
        raise error("phone", str(exc)) from None


def _domain(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return contact_points.normalize_domain(value)
    except ValueError as exc:
        raise error("domain", str(exc)) from None


#: A phone number, normalized to +<digits> (the service setting SALES_DEFAULT_COUNTRY_CODE
#: lets a national number through, as contacts' does).
OptPhone = Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_phone)]
OptDomain = Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_domain)]

_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _sku(value: str) -> str:
    if not _SKU.match(value):
        raise error("sku", "must be a SKU: 1 to 64 of letters, digits and . _ / -, starting with a letter or digit")
    return value


def _month(value: str) -> str:
    if not _MONTH.match(value) or not 1900 <= int(value[:4]) <= 9999:
        raise error("month", "must be a month YYYY-MM")
    return value


Sku = Annotated[str, AfterValidator(_sku), Field(json_schema_extra={"pattern": _SKU.pattern})]
OptSlug = Annotated[Slug | None, BeforeValidator(_empty_to_none)]
OptMonth = Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(lambda v: None if v is None else _month(v))]
