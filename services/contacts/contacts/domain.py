"""Contact rules as plain functions: validation and normalization, dedup keys, search
folding, page tokens, consent bookkeeping, timeline entries built from loyalty events,
and GDPR anonymization. No I/O here; every function is unit-tested.

Normalization choices (documented for the gateway and the UI):

* Text (names, labels, summaries) is NFC-normalized, trimmed, inner whitespace collapsed;
  control characters are refused. Any script is welcome.
* ``display_name`` defaults to ``given family`` (``family given`` without a space for
  Chinese/Japanese names, ``family given`` for Korean), else the primary email, else
  the first phone. A contact needs at least a name, an email or a phone.
* Emails are lower-cased (local part included: the CRM treats ``Sara@X`` and
  ``sara@x`` as the same person).
* Phones become ``+<digits>`` (E.164-like: 8-15 digits, no leading 0). Persian ``۰-۹``
  and Arabic-Indic ``٠-٩`` digits are folded to ASCII; spaces, dashes, dots,
  parentheses and bidi marks are stripped; a leading ``00`` becomes ``+``. A number
  without a country code is refused, unless a default country calling code is
  configured (``CONTACTS_DEFAULT_COUNTRY_CODE``, e.g. ``98``): then a national number
  ``0912 ...`` has its trunk ``0`` dropped and becomes ``+98912...``.
* Tags are lower-cased slugs (letters of any script, digits, ``-`` and ``_``; inner
  spaces become ``-``), each at most 50 characters, at most 50 tags.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from crm_common import clock
from crm_common.errors import InvalidArgument
from crm_common.validation import Violations

LIFECYCLE_STAGES = ("subscriber", "lead", "marketing_qualified", "sales_qualified",
                    "opportunity", "customer", "evangelist", "other")
DEFAULT_LIFECYCLE_STAGE = "lead"
CONSENT_CHANNELS = ("email", "sms", "phone", "loyalty")
GENDERS = ("female", "male", "non_binary", "other", "prefer_not_to_say")
INTERACTION_CHANNELS = ("email", "phone", "sms", "chat", "meeting", "web", "social", "store", "other")
DIRECTIONS = ("inbound", "outbound", "internal")
ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country")

NAME_MAX = 200
LABEL_MAX = 40
GENDER_MAX = 40
OWNER_MAX = 100
SOURCE_MAX = 100
SUMMARY_MAX = 2000
MAX_EMAILS = 20
MAX_PHONES = 20
MAX_TAGS = 50
TAG_MAX = 50
MAX_CUSTOM_FIELDS = 100
CUSTOM_STR_MAX = 1000
CONSENT_HISTORY_MAX = 100
INT64 = 2 ** 63

#: A claim younger than this whose contact does not (yet) hold the key is an
#: in-flight create/update of another request, not a crash leftover.
CLAIM_GRACE = timedelta(seconds=30)

ERASED_DISPLAY_NAME = "Erased contact"
ERASED_SUMMARY = "[erased]"

#: Top-level contact fields a caller may set (create) or replace (update_contact).
WRITABLE_FIELDS = ("given_name", "family_name", "display_name", "emails", "phones", "company_id",
                   "birthday", "gender", "locale", "address", "tags", "lifecycle_stage", "owner",
                   "custom_fields")
READ_ONLY_FIELDS = ("id", "version", "created_at", "updated_at", "erased")

_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_TAG = re.compile(r"^[^\W_][\w-]*$")
_BIRTHDAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:-([a-zA-Z]{4}))?(?:-([a-zA-Z]{2}|\d{3}))?((?:-[a-zA-Z0-9]{5,8}|-\d[a-zA-Z0-9]{3})*)$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EMAIL_LOCAL = re.compile(r"^[\w.!#$%&'*+/=?^`{|}~-]+$")
_DOMAIN_LABEL = re.compile(r"^[^\W_](?:[\w-]{0,61}[^\W_])?$")
_TLD = re.compile(r"^(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$")
_ID = re.compile(r"^[a-z]{2,4}_[0-9A-Za-z]{1,40}$")

# Persian (U+06F0..) and Arabic-Indic (U+0660..) digits -> ASCII.
_DIGITS = {**{0x06F0 + i: str(i) for i in range(10)}, **{0x0660 + i: str(i) for i in range(10)}}
# What people type between phone digits, plus bidi marks that RTL editors insert.
_PHONE_NOISE = set(" \t\u00a0\u202f\u2009-\u2010\u2011\u2012\u2013\u2014.()/"
                   "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")
# Arabic letter variants folded to their Persian forms for search (ي→ی, ك→ک, ى→ی, ة→ه).
_SEARCH_FOLD = {**_DIGITS, 0x064A: "\u06cc", 0x0649: "\u06cc", 0x0643: "\u06a9", 0x0629: "\u0647",
                0x200C: " ", 0x0640: ""}  # ZWNJ -> space, tatweel removed


# --------------------------------------------------------------------------- text

def clean_text(value: Any, field: str, violations: Violations, *, max_len: int,
               allow_empty: bool = True) -> str | None:
    """NFC, trimmed, inner whitespace collapsed, no control characters."""
    if not isinstance(value, str):
        violations.add(field, "must be a string")
        return None
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        violations.add(field, "must not contain control characters")
        return None
    if not text and not allow_empty:
        violations.add(field, "is required")
        return None
    if len(text) > max_len:
        violations.add(field, f"must be at most {max_len} characters")
        return None
    return text


def _optional_text(value: Any, field: str, v: Violations, max_len: int) -> str | None:
    if value is None:
        return None
    text = clean_text(value, field, v, max_len=max_len)
    return text or None


def fold_digits(text: str) -> str:
    return text.translate(_DIGITS)


def _is_cjk(text: str) -> bool:
    return bool(text) and all(
        "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\u3040" <= ch <= "\u30ff"
        for ch in text if not ch.isspace())


def _is_hangul(text: str) -> bool:
    return bool(text) and all("\uac00" <= ch <= "\ud7af" or "\u1100" <= ch <= "\u11ff"
                              for ch in text if not ch.isspace())


def derive_display_name(given: str | None, family: str | None) -> str:
    given, family = given or "", family or ""
    if given and family:
        if _is_cjk(given) and _is_cjk(family):
            return family + given
        if _is_hangul(given) and _is_hangul(family):
            return f"{family} {given}"
    return " ".join(p for p in (given, family) if p)


# --------------------------------------------------------------------------- email / phone

def normalize_email(value: Any) -> str:
    """Lower-cased address, or ValueError with a human reason."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    addr = unicodedata.normalize("NFC", value).strip().lower()
    if not addr:
        raise ValueError("is required")
    if len(addr) > 254:
        raise ValueError("must be at most 254 characters")
    if addr.count("@") != 1:
        raise ValueError("is not a valid email address (expected exactly one @)")
    local, domain = addr.split("@")
    if not local or len(local) > 64 or not _EMAIL_LOCAL.match(local) \
            or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("is not a valid email address (bad part before @)")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(lbl) for lbl in labels) \
            or not _TLD.match(labels[-1]):
        raise ValueError("is not a valid email address (bad domain)")
    return addr


def normalize_phone(value: Any, default_country_code: str | None = None) -> str:
    """``+<digits>`` or ValueError with a human reason (see module docstring)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a string")
    raw = fold_digits(unicodedata.normalize("NFKC", value))
    raw = "".join(ch for ch in raw if ch not in _PHONE_NOISE)
    if not raw:
        raise ValueError("is required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        if default_country_code and raw.isdigit() and raw.startswith("0") and not raw.startswith("00"):
            raw = "+" + default_country_code + raw[1:]
        else:
            raise ValueError("needs the country code: start with + or 00, e.g. +98 912 123 4567")
    digits = raw[1:]
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("may contain only digits, spaces, dashes, dots and parentheses after +")
    if digits.startswith("0"):
        raise ValueError("country code cannot start with 0")
    if not 8 <= len(digits) <= 15:
        raise ValueError("must have 8 to 15 digits including the country code")
    return "+" + digits


def normalize_domain(value: Any) -> str:
    """A company's domain: lower-cased host name (``https://`` and ``www.`` tolerated)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    host = unicodedata.normalize("NFC", value).strip().lower()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/")[0].removeprefix("www.").rstrip(".")
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(_DOMAIN_LABEL.match(lbl) for lbl in labels) \
            or not _TLD.match(labels[-1]):
        raise ValueError("must be a domain name such as example.com")
    return host


def email_key(address: str) -> str:
    return f"email:{address}"


def phone_key(number: str) -> str:
    return f"phone:{number}"


def dedup_keys(contact: dict[str, Any]) -> list[str]:
    """The unique keys a contact claims in ``contact_keys`` (its emails and phones)."""
    keys = [email_key(e["address"]) for e in contact.get("emails") or []]
    keys += [phone_key(p["number"]) for p in contact.get("phones") or []]
    return keys


def describe_key(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"{'email' if kind == 'email' else 'phone'} {value}"


# --------------------------------------------------------------------------- field validators

def _emails(value: Any, v: Violations) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        v.add("emails", "must be a list")
        return []
    if len(value) > MAX_EMAILS:
        v.add("emails", f"at most {MAX_EMAILS} emails")
        return []
    out, seen, primaries = [], set(), 0
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"address": item}
        if not isinstance(item, dict):
            v.add(f"emails[{i}]", "must be an object with address, label, primary")
            continue
        unknown = set(item) - {"address", "label", "primary"}
        if unknown:
            v.add(f"emails[{i}]", f"unknown field(s): {', '.join(sorted(unknown))}")
        try:
            address = normalize_email(item.get("address"))
        except ValueError as exc:
            v.add(f"emails[{i}].address", str(exc))
            continue
        if address in seen:
            v.add(f"emails[{i}].address", f"{address} is listed twice")
            continue
        seen.add(address)
        label = _optional_text(item.get("label"), f"emails[{i}].label", v, LABEL_MAX) or "other"
        primary = item.get("primary", False)
        if primary is None:
            primary = False
        if not isinstance(primary, bool):
            v.add(f"emails[{i}].primary", "must be a boolean")
            primary = False
        primaries += primary
        out.append({"address": address, "label": label, "primary": primary})
    if primaries > 1:
        v.add("emails", "only one email can be primary")
    elif out and primaries == 0:
        out[0]["primary"] = True
    return out


def _phones(value: Any, v: Violations, default_cc: str | None) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        v.add("phones", "must be a list")
        return []
    if len(value) > MAX_PHONES:
        v.add("phones", f"at most {MAX_PHONES} phones")
        return []
    out, seen = [], set()
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"number": item}
        if not isinstance(item, dict):
            v.add(f"phones[{i}]", "must be an object with number, label")
            continue
        unknown = set(item) - {"number", "label"}
        if unknown:
            v.add(f"phones[{i}]", f"unknown field(s): {', '.join(sorted(unknown))}")
        try:
            number = normalize_phone(item.get("number"), default_cc)
        except ValueError as exc:
            v.add(f"phones[{i}].number", str(exc))
            continue
        if number in seen:
            v.add(f"phones[{i}].number", f"{number} is listed twice")
            continue
        seen.add(number)
        label = _optional_text(item.get("label"), f"phones[{i}].label", v, LABEL_MAX) or "other"
        out.append({"number": number, "label": label})
    return out


def normalize_tag(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    tag = "-".join(unicodedata.normalize("NFC", value).lower().split())
    if not tag:
        raise ValueError("is required")
    if len(tag) > TAG_MAX:
        raise ValueError(f"must be at most {TAG_MAX} characters")
    if not _TAG.match(tag):
        raise ValueError("must be a slug: letters, digits, '-' and '_', starting with a letter or digit")
    return tag


def validate_tags(value: Any, v: Violations, field: str = "tags") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        v.add(field, "must be a list of strings")
        return []
    if len(value) > MAX_TAGS:
        v.add(field, f"at most {MAX_TAGS} tags")
        return []
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            tag = normalize_tag(item)
        except ValueError as exc:
            v.add(f"{field}[{i}]", str(exc))
            continue
        if tag not in out:
            out.append(tag)
    return out


def _birthday(value: Any, v: Violations, today: date) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _BIRTHDAY.match(value):
        v.add("birthday", "must be a date YYYY-MM-DD")
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        v.add("birthday", "is not a valid calendar date")
        return None
    if day > today:
        v.add("birthday", "cannot be in the future")
        return None
    if day.year < 1900:
        v.add("birthday", "must be in 1900 or later")
        return None
    return value


def _gender(value: Any, v: Violations) -> str | None:
    text = _optional_text(value, "gender", v, GENDER_MAX)
    if text is None:
        return None
    canonical = text.lower().replace("-", "_").replace(" ", "_")
    return canonical if canonical in GENDERS else text


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


def _locale(value: Any, v: Violations) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        v.add("locale", "must be a string")
        return None
    try:
        return normalize_locale(value)
    except ValueError as exc:
        v.add("locale", str(exc))
        return None


def _address(value: Any, v: Violations) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        v.add("address", "must be an object")
        return None
    unknown = set(value) - set(ADDRESS_FIELDS)
    if unknown:
        v.add("address", f"unknown field(s): {', '.join(sorted(unknown))}")
        return None
    out = {}
    for key in ADDRESS_FIELDS:
        raw = value.get(key)
        text = "" if raw is None else clean_text(raw, f"address.{key}", v, max_len=NAME_MAX)
        out[key] = text or ""
    out["country"] = out["country"].upper()
    if out["country"] and not _COUNTRY.match(out["country"]):
        v.add("address.country", "must be an ISO 3166-1 alpha-2 code such as IR")
    if not any(out.values()):
        return None
    return out


def _custom_fields(value: Any, v: Violations) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        v.add("custom_fields", "must be an object")
        return {}
    if len(value) > MAX_CUSTOM_FIELDS:
        v.add("custom_fields", f"at most {MAX_CUSTOM_FIELDS} fields")
        return {}
    out: dict[str, Any] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _CUSTOM_KEY.match(key):
            v.add(f"custom_fields.{key}", "key must match ^[a-z][a-z0-9_]{0,39}$")
            continue
        field = f"custom_fields.{key}"
        if isinstance(val, bool):
            out[key] = val
        elif isinstance(val, int):
            if not -INT64 <= val < INT64:
                v.add(field, "integer out of the 64-bit range")
                continue
            out[key] = val
        elif isinstance(val, float):
            if not math.isfinite(val):
                v.add(field, "must be a finite number")
                continue
            out[key] = val
        elif isinstance(val, str):
            text = unicodedata.normalize("NFC", val).strip()
            if len(text) > CUSTOM_STR_MAX:
                v.add(field, f"must be at most {CUSTOM_STR_MAX} characters")
                continue
            out[key] = text
        else:
            v.add(field, "must be a string, integer, float or boolean")
    return out


def _lifecycle(value: Any, v: Violations) -> str:
    if value in (None, ""):
        return DEFAULT_LIFECYCLE_STAGE
    if value not in LIFECYCLE_STAGES:
        v.add("lifecycle_stage", f"must be one of: {', '.join(LIFECYCLE_STAGES)}")
        return DEFAULT_LIFECYCLE_STAGE
    return value


def _company_id(value: Any, v: Violations) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith("cmp_") or not _ID.match(value):
        v.add("company_id", "must be a company id (cmp_...)")
        return None
    return value


def _field_validators(v: Violations, today: date, default_cc: str | None):
    return {
        "given_name": lambda x: _optional_text(x, "given_name", v, NAME_MAX),
        "family_name": lambda x: _optional_text(x, "family_name", v, NAME_MAX),
        "display_name": lambda x: _optional_text(x, "display_name", v, NAME_MAX),
        "emails": lambda x: _emails(x, v),
        "phones": lambda x: _phones(x, v, default_cc),
        "company_id": lambda x: _company_id(x, v),
        "birthday": lambda x: _birthday(x, v, today),
        "gender": lambda x: _gender(x, v),
        "locale": lambda x: _locale(x, v),
        "address": lambda x: _address(x, v),
        "tags": lambda x: validate_tags(x, v),
        "lifecycle_stage": lambda x: _lifecycle(x, v),
        "owner": lambda x: _optional_text(x, "owner", v, OWNER_MAX),
        "custom_fields": lambda x: _custom_fields(x, v),
    }


def _fallback_display_name(fields: dict[str, Any]) -> str:
    name = derive_display_name(fields.get("given_name"), fields.get("family_name"))
    if name:
        return name
    for e in fields.get("emails") or []:
        if e["primary"]:
            return e["address"]
    if fields.get("phones"):
        return fields["phones"][0]["number"]
    return ""


def validate_consents_input(value: Any, v: Violations, at: datetime) -> dict[str, dict[str, Any]]:
    """``{channel: {"granted": bool, "source": str}}`` -> stored consents (every channel)."""
    out = {ch: empty_consent() for ch in CONSENT_CHANNELS}
    if value is None:
        return out
    if not isinstance(value, dict):
        v.add("consents", "must be an object keyed by channel")
        return out
    for ch, item in value.items():
        field = f"consents.{ch}"
        if ch not in CONSENT_CHANNELS:
            v.add(field, f"unknown channel; channels: {', '.join(CONSENT_CHANNELS)}")
            continue
        if isinstance(item, bool):
            item = {"granted": item}
        if not isinstance(item, dict) or not isinstance(item.get("granted"), bool):
            v.add(f"{field}.granted", "must be a boolean")
            continue
        source = _optional_text(item.get("source"), f"{field}.source", v, SOURCE_MAX)
        if item["granted"] and not source:
            v.add(f"{field}.source", "is required when consent is granted")
            continue
        out[ch] = {"granted": item["granted"], "source": source, "at": at}
    return out


def empty_consent() -> dict[str, Any]:
    return {"granted": False, "source": None, "at": None}


def validate_new_contact(data: Any, *, now: datetime, default_country_code: str | None = None
                         ) -> dict[str, Any]:
    """Validate ``create_contact``'s input; return the normalized stored fields
    (without ids, timestamps and search fields). Read-only fields (id, version, ...) are
    ignored so a caller may send back a whole contact. Raises InvalidArgument listing
    every violation."""
    v = Violations()
    if not isinstance(data, dict):
        raise InvalidArgument.field("contact", "must be an object")
    unknown = set(data) - set(WRITABLE_FIELDS) - set(READ_ONLY_FIELDS) - {"consents"}
    for key in sorted(unknown):
        v.add(str(key), "unknown field")
    validators = _field_validators(v, now.date(), default_country_code)
    fields = {name: validators[name](data.get(name)) for name in WRITABLE_FIELDS}
    fields["consents"] = validate_consents_input(data.get("consents"), v, now)
    v.raise_if_any()
    if not fields["display_name"]:
        fields["display_name"] = _fallback_display_name(fields)
    if not fields["display_name"]:
        raise InvalidArgument.field("contact", "needs a name, an email or a phone")
    return fields


def validate_changes(current: dict[str, Any], changes: Any, *, now: datetime,
                     default_country_code: str | None = None) -> dict[str, Any]:
    """Validate ``update_contact``'s ``changes`` (top-level fields to replace) against the
    stored ``current`` contact. Returns only the fields whose normalized value differs
    (``display_name`` is re-derived when it was derived and a name changed)."""
    if not isinstance(changes, dict):
        raise InvalidArgument.field("changes", "must be an object of fields to replace")
    v = Violations()
    for key in changes:
        if key == "consents":
            v.add("consents", "consents change only through set_consent (one channel at a time)")
        elif key in READ_ONLY_FIELDS:
            v.add(str(key), "is read-only")
        elif key not in WRITABLE_FIELDS:
            v.add(str(key), "unknown field")
    validators = _field_validators(v, now.date(), default_country_code)
    new = {key: validators[key](val) for key, val in changes.items() if key in WRITABLE_FIELDS}
    v.raise_if_any()
    merged = {**{k: current.get(k) for k in WRITABLE_FIELDS}, **new}
    if "display_name" in new:
        if not new["display_name"]:  # cleared: derive it again
            merged["display_name"] = _fallback_display_name(merged)
    elif current.get("display_name") == _fallback_display_name(current):
        merged["display_name"] = _fallback_display_name(merged)  # was derived: follow the names
    if not merged["display_name"]:
        raise InvalidArgument.field("changes", "a contact needs a name, an email or a phone")
    return {k: merged[k] for k in WRITABLE_FIELDS if merged[k] != current.get(k)}


# --------------------------------------------------------------------------- search

def fold_for_search(text: str) -> str:
    """What both stored ``search_text`` and queries go through: NFKC, case-folded,
    Persian/Arabic digits to ASCII, Arabic letter variants to their Persian forms."""
    text = unicodedata.normalize("NFKC", text).translate(_SEARCH_FOLD).casefold()
    return " ".join(text.split())


def search_text(fields: dict[str, Any]) -> str:
    parts = [fields.get("display_name") or "", fields.get("given_name") or "",
             fields.get("family_name") or ""]
    parts += [e["address"] for e in fields.get("emails") or []]
    for p in fields.get("phones") or []:
        parts.append(p["number"])
    return fold_for_search("\n".join(x for x in parts if x))


def search_pattern(text: Any) -> str | None:
    """A safe regex (escaped) for the query text; None for an empty query. A phone-like
    query (digits and phone punctuation only) also matches on its bare digits, with a
    leading 00 or national 0 dropped, so ``0912 123-4567`` finds ``+989121234567``."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgument.field("text", "must be a string")
    if len(text) > 200:
        raise InvalidArgument.field("text", "must be at most 200 characters")
    folded = fold_for_search(text)
    if not folded:
        return None
    alternatives = [re.escape(folded)]
    compact = "".join(ch for ch in fold_digits(text) if ch not in _PHONE_NOISE)
    if re.fullmatch(r"\+?[0-9]{3,}", compact):
        if compact.startswith("+"):
            digits = compact[1:]
        elif compact.startswith("00"):
            digits = compact[2:]
        else:
            digits = compact[1:] if compact.startswith("0") else compact
        if digits and digits != folded:
            alternatives.append(re.escape(digits))
    return "|".join(alternatives)


# --------------------------------------------------------------------------- page tokens

def encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: Any, required: dict[str, type]) -> dict[str, Any] | None:
    """None for an empty token; InvalidArgument('page_token') for anything malformed."""
    if token in (None, ""):
        return None
    bad = InvalidArgument.field("page_token", "is malformed; pass back a next_page_token unchanged")
    if not isinstance(token, str) or len(token) > 500:
        raise bad
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(payload, dict) or set(payload) != set(required):
        raise bad
    for key, typ in required.items():
        if not isinstance(payload[key], typ):
            raise bad
    if "id" in payload and not _ID.match(payload["id"]):
        raise bad
    return payload


def contacts_page_token(last_id: str) -> str:
    return encode_token({"id": last_id})


def decode_contacts_token(token: Any) -> str | None:
    payload = decode_token(token, {"id": str})
    return None if payload is None else payload["id"]


def timeline_page_token(occurred_at: datetime, entry_id: str) -> str:
    return encode_token({"at": clock.to_iso(occurred_at), "id": entry_id})


def decode_timeline_token(token: Any) -> tuple[datetime, str] | None:
    payload = decode_token(token, {"at": str, "id": str})
    if payload is None:
        return None
    try:
        return clock.from_iso(payload["at"]), payload["id"]
    except ValueError:
        raise InvalidArgument.field("page_token", "is malformed; pass back a next_page_token unchanged") from None


# --------------------------------------------------------------------------- consent

def validate_consent_change(channel: Any, granted: Any, source: Any) -> tuple[str, bool, str]:
    v = Violations()
    if channel not in CONSENT_CHANNELS:
        v.add("channel", f"must be one of: {', '.join(CONSENT_CHANNELS)}")
    if not isinstance(granted, bool):
        v.add("granted", "must be a boolean")
    src = clean_text(source, "source", v, max_len=SOURCE_MAX, allow_empty=False)
    v.raise_if_any()
    return channel, granted, src


def consent_history_after(history: list[dict[str, Any]] | None, entry: dict[str, Any]
                          ) -> list[dict[str, Any]]:
    """Append, keeping the newest CONSENT_HISTORY_MAX entries (FerretDB ignores $slice)."""
    return (list(history or []) + [entry])[-CONSENT_HISTORY_MAX:]


# --------------------------------------------------------------------------- timeline

def validate_interaction(channel: Any, direction: Any, summary: Any, occurred_at: Any,
                         *, now: datetime) -> dict[str, Any]:
    v = Violations()
    if channel not in INTERACTION_CHANNELS:
        v.add("channel", f"must be one of: {', '.join(INTERACTION_CHANNELS)}")
    if direction not in DIRECTIONS:
        v.add("direction", f"must be one of: {', '.join(DIRECTIONS)}")
    text = None
    if not isinstance(summary, str):
        v.add("summary", "must be a string")
    else:
        text = unicodedata.normalize("NFC", summary).strip()
        if not text:
            v.add("summary", "is required")
        elif len(text) > SUMMARY_MAX:
            v.add("summary", f"must be at most {SUMMARY_MAX} characters")
    at = now
    if occurred_at not in (None, ""):
        try:
            at = clock.from_iso(occurred_at)
        except (ValueError, TypeError):
            v.add("occurred_at", "must be an ISO-8601 timestamp")
        else:
            if at > now + timedelta(minutes=5):
                v.add("occurred_at", "cannot be in the future")
    v.raise_if_any()
    return {"kind": "interaction", "channel": channel, "direction": direction, "summary": text,
            "occurred_at": at, "source": "manual", "data": {}}


def _event_time(envelope: dict[str, Any], *candidates: Any) -> datetime:
    for value in (*candidates, envelope.get("occurred_at")):
        if isinstance(value, str):
            try:
                return clock.from_iso(value)
            except ValueError:
                continue
    return clock.now()


def loyalty_timeline_entry(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """A timeline entry (without ids/timestamps) for a loyalty event, None if the
    event is not one we show or carries no contact."""
    etype = envelope.get("type")
    data = envelope.get("data") or {}
    contact_id = data.get("contact_id") or envelope.get("subject")
    if not isinstance(contact_id, str) or not contact_id:
        return None
    entry = data.get("entry") if isinstance(data.get("entry"), dict) else {}
    if etype == "member_enrolled":
        tier = data.get("tier")
        summary = "Enrolled in the loyalty club" + (f" ({tier})" if tier else "")
        at = _event_time(envelope, data.get("enrolled_at"))
        extra = {"member_id": data.get("member_id"), "tier": tier}
    elif etype in ("points_earned", "points_redeemed", "points_expired"):
        points = abs(int(entry.get("points") or 0))
        if etype == "points_earned":
            ref = "/".join(str(x) for x in (entry.get("source"), entry.get("source_ref")) if x)
            summary = f"Earned {points} points" + (f" ({ref})" if ref else "")
        elif etype == "points_redeemed":
            reason = entry.get("reason")
            summary = f"Redeemed {points} points" + (f" ({reason})" if reason else "")
        else:
            summary = f"{points} points expired"
        at = _event_time(envelope, entry.get("occurred_at"))
        extra = {"entry": entry, "balance": data.get("balance")}
    elif etype == "tier_changed":
        summary = f"Tier changed: {data.get('from_tier')} → {data.get('to_tier')}"
        at = _event_time(envelope)
        extra = {"from_tier": data.get("from_tier"), "to_tier": data.get("to_tier"),
                 "points_earned_12m": data.get("points_earned_12m")}
    else:
        return None
    return {"contact_id": contact_id, "kind": "loyalty", "channel": "other", "direction": "internal",
            "summary": summary, "occurred_at": at, "source": "loyalty",
            "data": {"event_type": etype, "event_id": envelope.get("event_id"), **extra}}


# --------------------------------------------------------------------------- erase

def anonymized_fields(at: datetime) -> dict[str, Any]:
    """What erase_contact writes. Kept on purpose: ``tags``, ``lifecycle_stage``, ``owner``,
    ``company_id`` (business segmentation, no personal data) and the consent history
    (an audit trail: channel, granted, source, time). Every consent is withdrawn so an
    erased contact can never be messaged."""
    return {
        "given_name": None, "family_name": None, "display_name": ERASED_DISPLAY_NAME,
        "emails": [], "phones": [], "birthday": None, "gender": None, "locale": None,
        "address": None, "custom_fields": {},
        "consents": {ch: {"granted": False, "source": "erasure", "at": at} for ch in CONSENT_CHANNELS},
        "search_text": "", "dedup_keys": [], "erased": True, "erased_at": at,
    }
