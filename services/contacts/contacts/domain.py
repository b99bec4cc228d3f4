"""Contact rules as plain functions (no I/O; ``now`` is passed in): what a validated
request becomes as stored fields, display names, dedup keys, consent bookkeeping,
manual interactions and GDPR anonymization. Field shapes and normalization are the
contracts' (contacts.contracts); this module holds the rules that look at several
fields, or at the stored contact, at once.

* ``display_name`` defaults to ``given family`` (``family given`` without a space for
  Chinese/Japanese names, ``family given`` for Korean), else the primary email, else
  the first phone. A contact needs at least a name, an email or a phone.
* At most one email is primary; with none marked, the first one is.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crm_common.errors import InvalidArgument
from crm_common.validation import Violations

from . import search
from .contracts import (CONSENT_CHANNELS, DEFAULT_LIFECYCLE_STAGE, ContactIn, LogInteraction)

CONSENT_HISTORY_MAX = 100
INTERACTION_FUTURE_SLACK = timedelta(minutes=5)

#: A claim younger than this whose contact does not (yet) hold the key is an
#: in-flight create/update of another request, not a crash leftover.
CLAIM_GRACE = timedelta(seconds=30)

ERASED_DISPLAY_NAME = "Erased contact"
ERASED_SUMMARY = "[erased]"

#: Top-level contact fields a caller sets (create) or replaces (update_contact).
WRITABLE_FIELDS = ("given_name", "family_name", "display_name", "emails", "phones", "company_id",
                   "birthday", "gender", "locale", "address", "tags", "lifecycle_stage", "owner",
                   "custom_fields")


# --------------------------------------------------------------------------- names

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


def fallback_display_name(fields: dict[str, Any]) -> str:
    name = derive_display_name(fields.get("given_name"), fields.get("family_name"))
    if name:
        return name
    for e in fields.get("emails") or []:
        if e["primary"]:
            return e["address"]
    if fields.get("phones"):
        return fields["phones"][0]["number"]
    return ""


# --------------------------------------------------------------------------- fields

def _listed_once(items, key: str, path: str, v: Violations) -> list[dict[str, Any]]:
    """``items`` (emails, phones) as stored dicts, each ``key`` value once: a repeat is a
    violation at its own path (``emails[1].address``)."""
    out, seen = [], set()
    for i, item in enumerate(items or ()):
        value = getattr(item, key)
        if value in seen:
            v.add(f"{path}[{i}].{key}", f"{value} is listed twice")
            continue
        seen.add(value)
        out.append({**item.model_dump(), "label": item.label or "other"})
    return out


def _emails(contact: ContactIn, v: Violations, prefix: str) -> list[dict[str, Any]]:
    out = _listed_once(contact.emails, "address", f"{prefix}emails", v)
    primaries = sum(e["primary"] for e in out)
    if primaries > 1:
        v.add(f"{prefix}emails", "only one email can be primary")
    elif out and primaries == 0:
        out[0]["primary"] = True
    return out


def _stored_value(contact: ContactIn, name: str, v: Violations, prefix: str) -> Any:
    if name == "emails":
        return _emails(contact, v, prefix)
    if name == "phones":
        return _listed_once(contact.phones, "number", f"{prefix}phones", v)
    value = getattr(contact, name)
    if name == "address":
        return None if value is None or value.is_empty() else value.model_dump()
    if name == "tags":
        return list(value or [])
    if name == "custom_fields":
        return dict(value or {})
    if name == "lifecycle_stage":
        return value or DEFAULT_LIFECYCLE_STAGE
    return value


def empty_consent() -> dict[str, Any]:
    return {"granted": False, "source": None, "at": None}


def new_contact(contact: ContactIn, now: datetime, prefix: str = "contact.") -> dict[str, Any]:
    """The stored fields of a new contact (without ids, timestamps and search fields)."""
    v = Violations()
    fields = {name: _stored_value(contact, name, v, prefix) for name in WRITABLE_FIELDS}
    consents = {ch: empty_consent() for ch in CONSENT_CHANNELS}
    for ch, c in (contact.consents or {}).items():
        if c.granted and not c.source:
            v.add(f"{prefix}consents.{ch}.source", "is required when consent is granted")
            continue
        consents[ch] = {"granted": c.granted, "source": c.source, "at": now}
    fields["consents"] = consents
    v.raise_if_any()
    if not fields["display_name"]:
        fields["display_name"] = fallback_display_name(fields)
    if not fields["display_name"]:
        raise InvalidArgument.field(prefix.rstrip("."), "needs a name, an email or a phone")
    return fields


def changed_fields(current: dict[str, Any], changes: ContactIn, names: list[str],
                   prefix: str = "contact.") -> dict[str, Any]:
    """The stored fields that ``update_contact`` changes: those named in ``names`` whose
    normalized value differs from ``current`` (``display_name`` is derived again when
    it was derived and a name changed, or when it is cleared)."""
    v = Violations()
    new = {name: _stored_value(changes, name, v, prefix) for name in names}
    v.raise_if_any()
    merged = {**{k: current.get(k) for k in WRITABLE_FIELDS}, **new}
    if "display_name" in new:
        if not new["display_name"]:
            merged["display_name"] = fallback_display_name(merged)
    elif current.get("display_name") == fallback_display_name(current):
        merged["display_name"] = fallback_display_name(merged)  # was derived: follow the names
    if not merged["display_name"]:
        raise InvalidArgument.field(prefix.rstrip("."), "a contact needs a name, an email or a phone")
    return {k: merged[k] for k in WRITABLE_FIELDS if merged[k] != current.get(k)}


def search_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps beside the contact for search and dedup."""
    return {"search_terms": search.terms(fields), "dedup_keys": dedup_keys(fields)}


# --------------------------------------------------------------------------- dedup keys

def email_key(address: str) -> str:
    return f"email:{address}"


def phone_key(number: str) -> str:
    return f"phone:{number}"


def dedup_keys(contact: dict[str, Any]) -> list[str]:
    """The unique keys a contact claims in ``contact_keys`` (its emails and phones)."""
    keys = [email_key(e["address"]) for e in contact.get("emails") or []]
    keys += [phone_key(p["number"]) for p in contact.get("phones") or []]
    return keys


def company_keys(company_domain: str | None) -> list[str]:
    """The unique keys a company holds: its web domain (already normalized), if any."""
    return [f"domain:{company_domain}"] if company_domain else []


def describe_key(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"{'email' if kind == 'email' else 'phone'} {value}"


# --------------------------------------------------------------------------- consent

def consent_history_after(history: list[dict[str, Any]] | None, entry: dict[str, Any]
                          ) -> list[dict[str, Any]]:
    """Append, keeping the newest CONSENT_HISTORY_MAX entries (FerretDB ignores $slice)."""
    return (list(history or []) + [entry])[-CONSENT_HISTORY_MAX:]


def consent_history_on_create(consents: dict[str, dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [{"channel": ch, "granted": c["granted"], "source": c["source"], "at": now}
            for ch, c in consents.items() if c["at"] is not None]


# --------------------------------------------------------------------------- timeline

def interaction_entry(req: LogInteraction, now: datetime) -> dict[str, Any]:
    """A manual timeline entry (without ids/timestamps)."""
    at = req.occurred_at or now
    if at > now + INTERACTION_FUTURE_SLACK:
        raise InvalidArgument.field("occurred_at", "cannot be in the future")
    return {"kind": "interaction", "channel": req.channel, "direction": req.direction, "summary": req.summary,
            "occurred_at": at, "source": "manual", "reference": None, "data": {}}


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
        "search_terms": [], "dedup_keys": [], "erased": True, "erased_at": at,
    }
