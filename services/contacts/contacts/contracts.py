"""What the contacts service's RPCs accept: one model per RPC (crm.v1.ContactsService
in proto/crm/v1/contacts.proto is the same contract seen from outside; the fields and
their names match). Normalization happens here, so everything past validation is
canonical:

* Text (names, labels, summaries) is NFC-normalized, trimmed, inner whitespace
  collapsed; control characters are refused. Any script is welcome.
* Emails are lower-cased; phones become ``+<digits>`` (crm_common.contact_points:
  Persian and Arabic-Indic digits accepted; a number without a country code needs the
  service setting CONTACTS_DEFAULT_COUNTRY_CODE).
* Tags are lower-cased slugs (letters of any script, digits, ``-`` and ``_``; inner
  spaces become ``-``), each at most 50 characters, at most 50 tags.

Rules that look at several fields at once (one primary email, no address twice, a
contact needs a name, an email or a phone) are the domain's (contacts.domain).
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from crm_common import contact_points
from crm_common.contracts import (Command, Id, Model, OptText, OptTimestamp, Page, Request, Text, Tolerant,
                                  error)
from crm_common.timeline import Channel, Direction, SUMMARY_MAX

LIFECYCLE_STAGES = ("subscriber", "lead", "marketing_qualified", "sales_qualified",
                    "opportunity", "customer", "evangelist", "other")
DEFAULT_LIFECYCLE_STAGE = "lead"
CONSENT_CHANNELS = ("email", "sms", "phone", "loyalty")
GENDERS = ("female", "male", "non_binary", "other", "prefer_not_to_say")
ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country")

NAME_MAX = 200
LABEL_MAX = 40
OWNER_MAX = 100
SOURCE_MAX = 100
MAX_EMAILS = 20
MAX_PHONES = 20
MAX_TAGS = 50
TAG_MAX = 50
MAX_CUSTOM_FIELDS = 100
CUSTOM_STR_MAX = 1000
SEARCH_TEXT_MAX = 200
INT64 = 2 ** 63

#: Fields UpdateContact's update_mask may name (company_id changes with LinkContactToCompany).
UPDATABLE_FIELDS = ("given_name", "family_name", "display_name", "emails", "phones", "birthday", "gender",
                    "locale", "address", "tags", "lifecycle_stage", "owner", "custom_fields")

LifecycleStage = Literal["subscriber", "lead", "marketing_qualified", "sales_qualified", "opportunity",
                         "customer", "evangelist", "other"]
ConsentChannel = Literal["email", "sms", "phone", "loyalty"]

_TAG = re.compile(r"^[^\W_][\w-]*$")
_BIRTHDAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:-([a-zA-Z]{4}))?(?:-([a-zA-Z]{2}|\d{3}))?((?:-[a-zA-Z0-9]{5,8}|-\d[a-zA-Z0-9]{3})*)$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_COMPANY_ID = re.compile(r"^cmp_[0-9A-Za-z]{1,40}$")


# --------------------------------------------------------------------------- normalizers

def _reason(fn, *args):
    """``fn(*args)``, its ValueError turned into a validation error with the same text."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise error("invalid", str(exc)) from None


def normalize_tag(value: str) -> str:
    tag = "-".join(unicodedata.normalize("NFC", value).lower().split())
    if not tag:
        raise ValueError("is required")
    if len(tag) > TAG_MAX:
        raise ValueError(f"must be at most {TAG_MAX} characters")
    if not _TAG.match(tag):
        raise ValueError("must be a slug: letters, digits, '-' and '_', starting with a letter or digit")
    return tag


def normalize_locale(value: str) -> str:
    m = _LOCALE.match(value.strip().replace("_", "-"))
    if not m:
        raise ValueError("must be a BCP-47 language tag such as fa-IR, en, zh-Hant-TW")
    lang, script, region, variants = m.groups()
    out = [lang.lower()]
    if script:
        out.append(script.title())
    if region:
        out.append(region.upper())
    if variants:
        out += [x.lower() for x in variants.split("-") if x]
    return "-".join(out)


def _birthday(value: str | None) -> str | None:
    if value is None:
        return None
    if not _BIRTHDAY.match(value):
        raise error("birthday", "must be a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise error("birthday", "is not a valid calendar date") from None
    if day > date.today():
        raise error("birthday", "cannot be in the future")
    if day.year < 1900:
        raise error("birthday", "must be in 1900 or later")
    return value


def _gender(value: str | None) -> str | None:
    if value is None:
        return None
    canonical = value.lower().replace("-", "_").replace(" ", "_")
    return canonical if canonical in GENDERS else value


def _company_id(value: str | None) -> str | None:
    if value is not None and not _COMPANY_ID.match(value):
        raise error("company_id", "must be a company id (cmp_...)")
    return value


def _tags(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for tag in values or ():
        if tag not in out:
            out.append(tag)
    return out


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _text_or_number(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Tag = Annotated[str, AfterValidator(lambda v: _reason(normalize_tag, v))]
OptId = Annotated[str | None, BeforeValidator(_empty_to_none)]


def _custom_key(key: str) -> str:
    if not _CUSTOM_KEY.match(key):
        raise error("custom_field_key", "key must match ^[a-z][a-z0-9_]{0,39}$")
    return key


def _custom_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise error("custom_field", "integer out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error("custom_field", "must be a finite number")
        return value
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value).strip()
        if len(text) > CUSTOM_STR_MAX:
            raise error("custom_field", f"must be at most {CUSTOM_STR_MAX} characters")
        return text
    raise error("custom_field", "a value is required (string, integer, float or boolean)")


def _summary(value: str) -> str:
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise error("required", "is required")
    if len(text) > SUMMARY_MAX:
        raise error("too_long", f"must be at most {SUMMARY_MAX} characters")
    return text


CustomFields = Annotated[dict[Annotated[str, AfterValidator(_custom_key)], Annotated[Any, AfterValidator(_custom_value)]],
                         Field(max_length=MAX_CUSTOM_FIELDS)]


# --------------------------------------------------------------------------- shapes

def _address_string(value: Any) -> Any:
    return {"address": value} if isinstance(value, str) else value


def _phone_string(value: Any) -> Any:
    return {"number": value} if isinstance(value, (str, int)) and not isinstance(value, bool) else value


class EmailIn(Model):
    address: Annotated[str, AfterValidator(lambda v: _reason(contact_points.normalize_email, v))]
    label: OptText(LABEL_MAX) = None
    primary: bool = False


class PhoneIn(Model):
    number: Annotated[str, BeforeValidator(_text_or_number)]
    label: OptText(LABEL_MAX) = None

    @field_validator("number")
    @classmethod
    def _normalized(cls, value: str, info: ValidationInfo) -> str:
        default_cc = (info.context or {}).get("default_country_code")
        return _reason(contact_points.normalize_phone, value, default_cc)


class AddressIn(Model):
    line1: Text(NAME_MAX) = ""
    line2: Text(NAME_MAX) = ""
    city: Text(NAME_MAX) = ""
    region: Text(NAME_MAX) = ""
    postal_code: Text(NAME_MAX) = ""
    country: Annotated[str, AfterValidator(lambda v: v.strip().upper())] = ""

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if value and not _COUNTRY.match(value):
            raise error("country", "must be an ISO 3166-1 alpha-2 code such as IR")
        return value

    def is_empty(self) -> bool:
        return not any(getattr(self, f) for f in ADDRESS_FIELDS)


class ConsentIn(Tolerant):
    """One channel's consent as a caller gives it (``at`` is output only, ignored)."""

    granted: bool
    source: OptText(SOURCE_MAX) = None


def _consent_shorthand(value: Any) -> Any:
    return {"granted": value} if isinstance(value, bool) else value


class ContactIn(Model):
    """A contact as create_contact takes it, and the fields update_contact replaces.
    Output-only fields (id, version, timestamps, erased) are accepted and ignored, so a
    caller may send back a contact it read."""

    id: str | None = None
    version: int | None = None
    created_at: OptTimestamp = None
    updated_at: OptTimestamp = None
    erased: bool | None = None

    given_name: OptText(NAME_MAX) = None
    family_name: OptText(NAME_MAX) = None
    display_name: OptText(NAME_MAX) = None
    emails: Annotated[list[Annotated[EmailIn, BeforeValidator(_address_string)]] | None,
                      Field(max_length=MAX_EMAILS)] = None
    phones: Annotated[list[Annotated[PhoneIn, BeforeValidator(_phone_string)]] | None,
                      Field(max_length=MAX_PHONES)] = None
    company_id: Annotated[OptId, AfterValidator(_company_id)] = None
    birthday: Annotated[OptId, AfterValidator(_birthday)] = None
    gender: Annotated[OptText(40), AfterValidator(_gender)] = None
    locale: Annotated[OptId, AfterValidator(lambda v: None if v is None else _reason(normalize_locale, v))] = None
    address: AddressIn | None = None
    tags: Annotated[list[Tag] | None, Field(max_length=MAX_TAGS), AfterValidator(_tags)] = None
    lifecycle_stage: Annotated[LifecycleStage | None, BeforeValidator(_empty_to_none)] = None
    owner: OptText(OWNER_MAX) = None
    custom_fields: CustomFields | None = None
    consents: dict[ConsentChannel, Annotated[ConsentIn, BeforeValidator(_consent_shorthand)]] | None = None


class CompanyIn(Tolerant):
    name: Text(NAME_MAX, required=True)
    domain: Annotated[OptId, AfterValidator(lambda v: None if v is None else _reason(contact_points.normalize_domain, v))] = None
    tags: Annotated[list[Tag] | None, Field(max_length=MAX_TAGS), AfterValidator(_tags)] = None


# --------------------------------------------------------------------------- RPCs

class CreateContact(Command):
    contact: ContactIn


class GetContact(Request):
    contact_id: Id


class UpdateContact(Command):
    """Replace the top-level fields named in ``update_mask`` with their values in
    ``contact``, if the contact is still at ``expected_version``."""

    contact_id: Id
    expected_version: int = Field(ge=1)
    contact: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = Field(default_factory=dict)
    update_mask: Annotated[list[Literal[UPDATABLE_FIELDS]], Field(min_length=1)]


class SetConsent(Command):
    contact_id: Id
    channel: ConsentChannel
    granted: bool
    source: Text(SOURCE_MAX, required=True)


class SearchContacts(Request, Page):
    text: Annotated[str, AfterValidator(lambda v: v.strip()), Field(max_length=SEARCH_TEXT_MAX)] = ""
    tag: Annotated[OptId, AfterValidator(lambda v: None if v is None else _reason(normalize_tag, v))] = None
    lifecycle_stage: Annotated[LifecycleStage | None, BeforeValidator(_empty_to_none)] = None
    owner: OptText(OWNER_MAX) = None


class LogInteraction(Command):
    contact_id: Id
    channel: Channel
    direction: Direction
    summary: Annotated[str, AfterValidator(_summary)]
    occurred_at: OptTimestamp = None


class ListTimeline(Request, Page):
    contact_id: Id


class EraseContact(Command):
    contact_id: Id


class CreateCompany(Command):
    company: CompanyIn


class GetCompany(Request):
    company_id: Id


class LinkContactToCompany(Command):
    contact_id: Id
    company_id: Id


class GetConsentHistory(Request):
    contact_id: Id
