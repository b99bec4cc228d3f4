"""The audience read model: what marketing knows of one contact, built only from the
facts other services publish (and marketing's own engagement facts). Pure functions over
plain dicts; no I/O, times passed in.

Every function here is idempotent and order-tolerant, because events from different
services (and even of one service, on different queues) arrive in any order and may
arrive twice:

* snapshots win by their own clock: a contact by its ``version``, a consent by its
  ``at``, a tier by ``changed_at``, a points balance by its entry's ``occurred_at``, a
  purchase summary by the time sales published it;
* sets are keyed by what they are about: an order by its id (a refund leaves a tombstone,
  so a late ``order_paid`` does not bring it back), a ticket by its id (its newest fact
  wins), an engagement by ``(message, kind, link)``.

The state (one audience document) has these parts, each optional:
``contact`` (the contact's snapshot), ``consents``, ``erased``, ``purchases`` (the
summary), ``orders`` (recent paid orders), ``loyalty``, ``tickets``, ``engagement``,
``expectations`` (with the value each had in the contact's custom fields), ``segments``
(memberships, written by segments.membership).
"""
from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_common import clock

from ..segments.rules import CHANNELS, CONTACT_TIMES, TIERS, VALUES

ORDERS_KEPT_DAYS = 400          # recent orders answer "ordered in the last N days" up to a year
ORDERS_KEPT_MAX = 200
TICKETS_CLOSED_KEPT = 200
HISTORY_KEPT = 50
CAMPAIGNS_KEPT = 200            # opened/clicked campaigns remembered per contact

#: Contact custom fields that carry what the customer expects (contacts' typed custom
#: fields; staff and imports set them), beside the answers to marketing's surveys.
EXPECTATION_KEYS = ("preferred_channel", "preferred_contact_time", "values", "timezone")
CONTACT_FIELDS = ("given_name", "family_name", "display_name", "birthday", "gender", "locale", "tags",
                  "lifecycle_stage", "owner", "company_id", "custom_fields")
PERSONAL = ("given_name", "family_name", "display_name", "emails", "phones", "birthday", "address",
            "custom_fields", "gender")


def parse_time(value: Any) -> datetime | None:
    """A datetime, or an ISO-8601 string as one; None for anything else."""
    if isinstance(value, datetime):
        return value
    try:
        return clock.from_iso(value)
    except (TypeError, ValueError):
        return None


def _newer(at: datetime | None, previous: datetime | None) -> bool:
    """``at`` wins over ``previous`` (a fact without a time never wins over one with)."""
    if at is None:
        return previous is None
    return previous is None or at >= previous


# --------------------------------------------------------------------------- contacts

def apply_contact(state: dict[str, Any], contact: dict[str, Any]) -> dict[str, Any]:
    """contact_created / contact_updated (and a rebuild's snapshot): the newest version wins."""
    version = contact.get("version")
    previous = (state.get("contact") or {}).get("version")
    if state.get("erased") or not isinstance(version, int) or (isinstance(previous, int) and previous >= version):
        return state
    out = copy.deepcopy(state)
    emails = [e.get("address") for e in contact.get("emails") or [] if isinstance(e, dict) and e.get("address")]
    primary = next((e.get("address") for e in contact.get("emails") or []
                    if isinstance(e, dict) and e.get("primary") and e.get("address")), emails[0] if emails else None)
    phones = [p.get("number") for p in contact.get("phones") or [] if isinstance(p, dict) and p.get("number")]
    address = contact.get("address") or {}
    snapshot = {k: contact.get(k) for k in CONTACT_FIELDS}
    snapshot.update(version=version, emails=emails, email=primary, phones=phones, phone=phones[0] if phones else None,
                    country=(address.get("country") or None) if isinstance(address, dict) else None,
                    city=(address.get("city") or None) if isinstance(address, dict) else None,
                    created_at=parse_time(contact.get("created_at")), updated_at=parse_time(contact.get("updated_at")))
    out["contact"] = snapshot
    for channel, consent in (contact.get("consents") or {}).items():
        if channel in CHANNELS and isinstance(consent, dict):
            out = _consent(out, channel, consent.get("granted") is True, parse_time(consent.get("at")))
    return _expectations_from_contact(out, snapshot.get("custom_fields") or {}, snapshot["updated_at"])


def apply_consent(state: dict[str, Any], channel: str, granted: bool, at: datetime | None) -> dict[str, Any]:
    """consent_changed: the newest decision per channel wins."""
    if channel not in CHANNELS:
        return state
    return _consent(copy.deepcopy(state), channel, granted, at)


def _consent(state: dict[str, Any], channel: str, granted: bool, at: datetime | None) -> dict[str, Any]:
    consents = state.setdefault("consents", {})
    current = consents.get(channel) or {}
    if at is None and current:
        return state          # a snapshot without a time never overrides a decision with one
    if _newer(at, current.get("at")) and (current.get("granted") != granted or current.get("at") != at):
        consents[channel] = {"granted": granted, "at": at}
    return state


def apply_erased(state: dict[str, Any]) -> dict[str, Any]:
    """contact_erased: personal data goes; behaviour stays as anonymous numbers; the
    contact is never sent anything again and leaves every segment."""
    out = copy.deepcopy(state)
    out["erased"] = True
    contact = out.get("contact") or {}
    for key in PERSONAL:
        contact.pop(key, None)
    contact.update(email=None, phone=None, city=None)
    out["contact"] = contact
    out.pop("expectations", None)
    out.pop("expectations_contact", None)
    engagement = out.get("engagement") or {}
    for entry in engagement.get("history") or []:
        entry.pop("link", None)
    return out


# --------------------------------------------------------------------------- expectations

def _normalize(key: str, value: Any) -> Any:
    """An expectation as marketing understands it, or None (unknown values are ignored)."""
    if key == "values":
        items = value if isinstance(value, list) else str(value or "").replace(";", ",").split(",")
        picked = [v for v in (str(i).strip().lower() for i in items) if v in VALUES]
        return sorted(set(picked)) or None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if key == "timezone":
        try:
            ZoneInfo(text)
            return text
        except (ZoneInfoNotFoundError, ValueError):
            return None
    text = text.lower()
    allowed = CHANNELS if key == "preferred_channel" else CONTACT_TIMES
    return text if text in allowed else None


def _expectations_from_contact(state: dict[str, Any], custom: dict[str, Any], at: datetime | None) -> dict[str, Any]:
    """A custom field counts when it changed in this version of the contact (so an
    unrelated edit of the contact does not undo a newer survey answer)."""
    seen = state.setdefault("expectations_contact", {})
    for key in EXPECTATION_KEYS:
        value = _normalize(key, custom.get(key))
        if key in seen and seen[key] == value:
            continue
        seen[key] = value
        state = _expect(state, key, value, "contact", at)
    return state


def apply_survey(state: dict[str, Any], survey: str, answers: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Answers to a marketing survey (RecordSurveyAnswers): the newest statement of each
    expectation wins, whoever recorded it."""
    out = copy.deepcopy(state)
    for key, value in answers.items():
        if key in EXPECTATION_KEYS and value not in (None, "", []):
            out = _expect(out, key, _normalize(key, value), f"survey:{survey}", at)
    return out


def _expect(state: dict[str, Any], key: str, value: Any, source: str, at: datetime | None) -> dict[str, Any]:
    expectations = state.setdefault("expectations", {})
    current = expectations.get(key) or {}
    if _newer(at, current.get("at")):
        if value is None:
            expectations.pop(key, None)
        else:
            expectations[key] = {"value": value, "source": source, "at": at}
    return state


def expectation(state: dict[str, Any], key: str) -> Any:
    return ((state.get("expectations") or {}).get(key) or {}).get("value")


# --------------------------------------------------------------------------- sales

def apply_summary(state: dict[str, Any], summary: dict[str, Any], at: datetime | None) -> dict[str, Any]:
    """purchase_summary_changed: sales' summary is the authority for lifetime value; the
    newest one wins. Read tolerantly: totals per currency as a list of money, a
    ``{currency: minor}`` map, or money entries under ``totals``/``total_spent``."""
    current = state.get("purchases") or {}
    at = parse_time(summary.get("updated_at")) or at
    if not _newer(at, current.get("at")):
        return state
    out = copy.deepcopy(state)
    out["purchases"] = {"at": at, "order_count": _int(summary.get("order_count")),
                        "totals": _totals(summary.get("total_spent", summary.get("totals"))),
                        "first_at": parse_time(summary.get("first_purchase_at") or summary.get("first_order_at")),
                        "last_at": parse_time(summary.get("last_purchase_at") or summary.get("last_order_at"))}
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _totals(value: Any) -> dict[str, int]:
    items = value if isinstance(value, list) else ([value] if isinstance(value, dict) and "currency" in value else [])
    if isinstance(value, dict) and "currency" not in value:
        return {str(k): _int(v) for k, v in value.items() if isinstance(k, str) and len(k) == 3}
    out: dict[str, int] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("currency"), str):
            out[item["currency"]] = out.get(item["currency"], 0) + _int(item.get("amount_minor"))
    return out


def apply_order_paid(state: dict[str, Any], order_id: str, paid_at: datetime, total: dict[str, Any]) -> dict[str, Any]:
    """order_paid: a recent purchase (unless it was refunded already)."""
    orders = state.get("orders") or {}
    if order_id in orders:
        return state
    out = copy.deepcopy(state)
    out.setdefault("orders", {})[order_id] = {"at": paid_at, "currency": total.get("currency"),
                                              "amount": _int(total.get("amount_minor")), "refunded": False}
    return _prune_orders(out, paid_at)


def apply_order_refunded(state: dict[str, Any], order_id: str, refunded_at: datetime) -> dict[str, Any]:
    """order_refunded: the purchase no longer counts (a tombstone if it was not seen paid)."""
    current = (state.get("orders") or {}).get(order_id)
    if current and current.get("refunded"):
        return state
    out = copy.deepcopy(state)
    entry = out.setdefault("orders", {}).setdefault(order_id, {"at": refunded_at, "currency": None, "amount": 0})
    entry["refunded"] = True
    return _prune_orders(out, refunded_at)


def _prune_orders(state: dict[str, Any], now: datetime) -> dict[str, Any]:
    cutoff = now - timedelta(days=ORDERS_KEPT_DAYS)
    kept = sorted(((k, v) for k, v in state["orders"].items() if v["at"] >= cutoff), key=lambda kv: kv[1]["at"])
    state["orders"] = dict(kept[-ORDERS_KEPT_MAX:])
    return state


# --------------------------------------------------------------------------- loyalty

def apply_member_enrolled(state: dict[str, Any], tier: str, enrolled_at: datetime | None) -> dict[str, Any]:
    loyalty = state.get("loyalty") or {}
    if loyalty.get("member") and loyalty.get("tier_at") is not None:
        return state
    out = copy.deepcopy(state)
    loyalty = out.setdefault("loyalty", {})
    loyalty["member"] = True
    if tier in TIERS and _newer(enrolled_at, loyalty.get("tier_at")):
        loyalty.update(tier=tier, tier_at=enrolled_at)
    loyalty.setdefault("balance", 0)
    return out


def apply_tier(state: dict[str, Any], tier: str, changed_at: datetime | None) -> dict[str, Any]:
    loyalty = state.get("loyalty") or {}
    if tier not in TIERS or not _newer(changed_at, loyalty.get("tier_at")) or (
            loyalty.get("tier") == tier and loyalty.get("tier_at") == changed_at):
        return state
    out = copy.deepcopy(state)
    out.setdefault("loyalty", {}).update(member=True, tier=tier, tier_at=changed_at)
    return out


def apply_balance(state: dict[str, Any], balance: int, at: datetime | None) -> dict[str, Any]:
    loyalty = state.get("loyalty") or {}
    if not _newer(at, loyalty.get("balance_at")) or (loyalty.get("balance") == balance and
                                                      loyalty.get("balance_at") == at):
        return state
    out = copy.deepcopy(state)
    out.setdefault("loyalty", {}).update(member=True, balance=balance, balance_at=at)
    return out


# --------------------------------------------------------------------------- service desk

def apply_ticket(state: dict[str, Any], ticket_id: str, active: bool, at: datetime) -> dict[str, Any]:
    """A ticket is active (new, open, pending) or not (resolved, closed) as its newest
    fact says: opened, its status changed (a reopen too), resolved. An older fact than
    the one kept changes nothing, so the order of arrival does not matter."""
    tickets = state.get("tickets") or {}
    known = (tickets.get("open") or {}).get(ticket_id) or (tickets.get("closed") or {}).get(ticket_id)
    if not ticket_id or (known is not None and known >= at):
        return state
    out = copy.deepcopy(state)
    tickets = out.setdefault("tickets", {})
    opened, closed = tickets.setdefault("open", {}), tickets.setdefault("closed", {})
    opened.pop(ticket_id, None)
    closed.pop(ticket_id, None)
    (opened if active else closed)[ticket_id] = at
    if len(closed) > TICKETS_CLOSED_KEPT:
        tickets["closed"] = dict(sorted(closed.items(), key=lambda kv: kv[1])[-TICKETS_CLOSED_KEPT:])
    return out


def apply_csat(state: dict[str, Any], score: int, at: datetime) -> dict[str, Any]:
    csat = (state.get("tickets") or {}).get("csat") or {}
    if not 1 <= score <= 5 or not _newer(at, csat.get("at")) or csat.get("at") == at:
        return state
    out = copy.deepcopy(state)
    out.setdefault("tickets", {})["csat"] = {"score": score, "at": at}
    return out


# --------------------------------------------------------------------------- engagement

def apply_engagement(state: dict[str, Any], *, kind: str, message_id: str, campaign_id: str, channel: str,
                     at: datetime, link: str | None = None) -> dict[str, Any]:
    """message_opened / message_clicked / message_replied: remembered once per
    (message, kind, link), newest first in a bounded history."""
    engagement = state.get("engagement") or {}
    # a link may carry personal data (a tracking parameter): the key keeps only its hash
    key = f"{message_id}|{kind}|{hashlib.sha256((link or '').encode()).hexdigest()[:16]}"
    if key in (engagement.get("seen") or []):
        return state
    out = copy.deepcopy(state)
    engagement = out.setdefault("engagement", {})
    engagement["seen"] = ((engagement.get("seen") or []) + [key])[-HISTORY_KEPT * 2:]
    entry = {"at": at, "kind": kind, "message_id": message_id, "campaign_id": campaign_id, "channel": channel}
    if link:
        entry["link"] = link
    history = sorted([*(engagement.get("history") or []), entry], key=lambda e: e["at"], reverse=True)
    engagement["history"] = history[:HISTORY_KEPT]
    bucket = {"opened": "opened", "clicked": "clicked"}.get(kind)
    if bucket:
        seen = engagement.setdefault(bucket, {})
        seen[campaign_id] = min(seen.get(campaign_id, at), at)
        if len(seen) > CAMPAIGNS_KEPT:
            engagement[bucket] = dict(sorted(seen.items(), key=lambda kv: kv[1])[-CAMPAIGNS_KEPT:])
        last = f"last_{bucket}"
        if engagement.get(last) is None or at > engagement[last]:
            engagement[last] = at
    return out
