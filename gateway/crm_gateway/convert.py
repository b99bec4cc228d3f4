"""dict (the services' JSON wire form, docs/rpc.md) <-> crm.v1 protobuf messages.

Hand-written rather than json_format: it is on the hot path, and the two forms differ
(ISO strings vs Timestamp, null vs "", custom-field values vs a oneof).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from crm.v1 import common_pb2, contacts_pb2, loyalty_pb2
from crm_common.errors import InvalidArgument

# ---------------------------------------------------------------- scalars

def set_timestamp(ts: Timestamp, value: Any) -> None:
    """Fill ``ts`` from an ISO-8601 string (or leave it unset for None/"")."""
    if not value:
        return
    try:
        ts.FromJsonString(value)
        return
    except (ValueError, TypeError, AttributeError):
        pass
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return  # an unparsable timestamp from a service is dropped, not fatal
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ts.FromDatetime(dt.astimezone(timezone.utc))


def timestamp_to_iso(ts: Timestamp) -> str:
    """ISO-8601 UTC with milliseconds and 'Z' ("2026-11-25T20:00:00.000Z")."""
    dt = ts.ToDatetime(tzinfo=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _i(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else int(value or 0)


def _none_if_empty(value: str) -> str | None:
    return value if value else None


def money_to_proto(msg: common_pb2.Money, value: dict | None) -> None:
    if value:
        msg.amount_minor = _i(value.get("amount_minor"))
        msg.currency = _s(value.get("currency"))


def money_to_dict(msg: common_pb2.Money) -> dict:
    return {"amount_minor": msg.amount_minor, "currency": msg.currency}


def custom_value_to_proto(msg: common_pb2.CustomFieldValue, value: Any) -> bool:
    if isinstance(value, bool):
        msg.bool_value = value
    elif isinstance(value, int):
        msg.int_value = value
    elif isinstance(value, float):
        msg.double_value = value
    elif isinstance(value, str):
        msg.string_value = value
    else:
        return False
    return True


def custom_value_to_python(msg: common_pb2.CustomFieldValue, field: str) -> Any:
    kind = msg.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument.field(field, "a value is required (string, int, double or bool)")
    return getattr(msg, kind)


# ---------------------------------------------------------------- contacts: dict -> proto

def contact_to_proto(d: dict, msg: contacts_pb2.Contact | None = None) -> contacts_pb2.Contact:
    c = msg if msg is not None else contacts_pb2.Contact()
    c.id = _s(d.get("id"))
    c.version = _i(d.get("version"))
    set_timestamp(c.created_at, d.get("created_at"))
    set_timestamp(c.updated_at, d.get("updated_at"))
    c.given_name = _s(d.get("given_name"))
    c.family_name = _s(d.get("family_name"))
    c.display_name = _s(d.get("display_name"))
    for e in d.get("emails") or ():
        c.emails.add(address=_s(e.get("address")), label=_s(e.get("label")),
                     primary=bool(e.get("primary")))
    for p in d.get("phones") or ():
        c.phones.add(number=_s(p.get("number")), label=_s(p.get("label")))
    c.company_id = _s(d.get("company_id"))
    c.birthday = _s(d.get("birthday"))
    c.gender = _s(d.get("gender"))
    c.locale = _s(d.get("locale"))
    addr = d.get("address")
    if addr:
        a = c.address
        a.line1 = _s(addr.get("line1"))
        a.line2 = _s(addr.get("line2"))
        a.city = _s(addr.get("city"))
        a.region = _s(addr.get("region"))
        a.postal_code = _s(addr.get("postal_code"))
        a.country = _s(addr.get("country"))
    tags = d.get("tags")
    if tags:
        c.tags.extend(_s(t) for t in tags)
    c.lifecycle_stage = _s(d.get("lifecycle_stage"))
    c.owner = _s(d.get("owner"))
    for key, value in (d.get("custom_fields") or {}).items():
        custom_value_to_proto(c.custom_fields[key], value)
    for channel, consent in (d.get("consents") or {}).items():
        if not consent:
            continue
        m = c.consents[channel]
        m.granted = bool(consent.get("granted"))
        m.source = _s(consent.get("source"))
        set_timestamp(m.at, consent.get("at"))
    c.erased = bool(d.get("erased"))
    return c


def company_to_proto(d: dict) -> contacts_pb2.Company:
    c = contacts_pb2.Company(id=_s(d.get("id")), name=_s(d.get("name")),
                             domain=_s(d.get("domain")), tags=[_s(t) for t in d.get("tags") or ()],
                             version=_i(d.get("version")))
    set_timestamp(c.created_at, d.get("created_at"))
    set_timestamp(c.updated_at, d.get("updated_at"))
    return c


def timeline_entry_to_proto(d: dict, msg: contacts_pb2.TimelineEntry | None = None) -> contacts_pb2.TimelineEntry:
    e = msg if msg is not None else contacts_pb2.TimelineEntry()
    e.id = _s(d.get("id"))
    e.contact_id = _s(d.get("contact_id"))
    e.kind = _s(d.get("kind"))
    e.channel = _s(d.get("channel"))
    e.direction = _s(d.get("direction"))
    e.summary = _s(d.get("summary"))
    set_timestamp(e.occurred_at, d.get("occurred_at"))
    e.source = _s(d.get("source"))
    data = d.get("data")
    if data:
        e.data.update(data)
    return e


# ---------------------------------------------------------------- contacts: proto -> dict

def email_to_dict(e: contacts_pb2.Email) -> dict:
    return {"address": e.address, "label": e.label, "primary": e.primary}


def phone_to_dict(p: contacts_pb2.Phone) -> dict:
    return {"number": p.number, "label": p.label}


def address_to_dict(a: contacts_pb2.Address) -> dict:
    return {"line1": a.line1, "line2": a.line2, "city": a.city, "region": a.region,
            "postal_code": a.postal_code, "country": a.country}


def custom_fields_to_dict(c: contacts_pb2.Contact, prefix: str) -> dict:
    return {k: custom_value_to_python(v, f"{prefix}.custom_fields[{k}]")
            for k, v in c.custom_fields.items()}


# Fields UpdateContact accepts in update_mask, and how each becomes a JSON value.
# Nullable scalar fields: "" clears them (None on the wire).
UPDATABLE_FIELDS: dict[str, Any] = {
    "given_name": lambda c: c.given_name,
    "family_name": lambda c: c.family_name,
    "display_name": lambda c: c.display_name,
    "emails": lambda c: [email_to_dict(e) for e in c.emails],
    "phones": lambda c: [phone_to_dict(p) for p in c.phones],
    "birthday": lambda c: _none_if_empty(c.birthday),
    "gender": lambda c: _none_if_empty(c.gender),
    "locale": lambda c: _none_if_empty(c.locale),
    "address": lambda c: address_to_dict(c.address) if c.HasField("address") else None,
    "tags": lambda c: list(c.tags),
    "lifecycle_stage": lambda c: c.lifecycle_stage,
    "owner": lambda c: _none_if_empty(c.owner),
    "custom_fields": lambda c: custom_fields_to_dict(c, "contact"),
}


def contact_input_to_dict(c: contacts_pb2.Contact) -> dict:
    """CreateContact's contact as create_contact's ``contact`` dict (only the fields given)."""
    d: dict[str, Any] = {}
    for name in ("given_name", "family_name", "display_name", "company_id", "birthday",
                 "gender", "locale", "lifecycle_stage", "owner"):
        v = getattr(c, name)
        if v:
            d[name] = v
    if c.emails:
        d["emails"] = [email_to_dict(e) for e in c.emails]
    if c.phones:
        d["phones"] = [phone_to_dict(p) for p in c.phones]
    if c.HasField("address"):
        d["address"] = address_to_dict(c.address)
    if c.tags:
        d["tags"] = list(c.tags)
    if c.custom_fields:
        d["custom_fields"] = custom_fields_to_dict(c, "contact")
    if c.consents:
        d["consents"] = {ch: {"granted": v.granted, "source": v.source} for ch, v in c.consents.items()}
    return d


def contact_changes_to_dict(c: contacts_pb2.Contact, paths: list[str]) -> dict:
    """UpdateContact's (contact, update_mask.paths) as update_contact's ``changes`` dict."""
    from crm_common.validation import Violations

    v = Violations()
    if not paths:
        v.add("update_mask", "must name at least one field")
    changes: dict[str, Any] = {}
    for i, path in enumerate(paths):
        get = UPDATABLE_FIELDS.get(path)
        if get is None:
            v.add(f"update_mask.paths[{i}]",
                  f"{path!r} is not an updatable field (one of: {', '.join(UPDATABLE_FIELDS)})")
            continue
        changes[path] = get(c)
    v.raise_if_any()
    return changes


# ---------------------------------------------------------------- loyalty

def member_to_proto(d: dict, msg: loyalty_pb2.Member | None = None) -> loyalty_pb2.Member:
    m = msg if msg is not None else loyalty_pb2.Member()
    m.contact_id = _s(d.get("contact_id"))
    m.member_id = _s(d.get("member_id"))
    m.status = _s(d.get("status"))
    m.tier = _s(d.get("tier"))
    m.balance = _i(d.get("balance"))
    m.points_earned_12m = _i(d.get("points_earned_12m"))
    set_timestamp(m.enrolled_at, d.get("enrolled_at"))
    m.display_name = _s(d.get("display_name"))
    m.version = _i(d.get("version"))
    nx = d.get("next_expiry")
    if nx:
        m.next_expiry.points = _i(nx.get("points"))
        set_timestamp(m.next_expiry.at, nx.get("at"))
    return m


def ledger_entry_to_proto(d: dict, msg: loyalty_pb2.LedgerEntry | None = None) -> loyalty_pb2.LedgerEntry:
    e = msg if msg is not None else loyalty_pb2.LedgerEntry()
    e.id = _s(d.get("id"))
    e.contact_id = _s(d.get("contact_id"))
    e.kind = _s(d.get("kind"))
    e.points = _i(d.get("points"))
    e.balance_after = _i(d.get("balance_after"))
    e.source = _s(d.get("source"))
    e.source_ref = _s(d.get("source_ref"))
    e.reason = _s(d.get("reason"))
    money_to_proto(e.amount, d.get("amount"))
    set_timestamp(e.occurred_at, d.get("occurred_at"))
    return e


def points_response_to_proto(d: dict) -> loyalty_pb2.PointsResponse:
    r = loyalty_pb2.PointsResponse()
    ledger_entry_to_proto(d.get("entry") or {}, r.entry)
    member_to_proto(d.get("member") or {}, r.member)
    return r
