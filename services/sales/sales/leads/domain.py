"""Lead rules as pure functions (no I/O; ``now`` is passed in): a new lead, the keys that
make two captures the same person, merging a duplicate capture, the status machine,
behavioural facts and the assignment record.

Statuses: ``new`` -> ``working`` (somebody acted on it) -> ``qualified`` -> ``converted``;
any open status -> ``disqualified`` (with a reason) -> ``working`` again (reopen).
``new``, ``working`` and ``qualified`` are *open*: an open lead holds its email and phone
(crm_common.claims), so a second capture of the same person merges into it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common.errors import FailedPrecondition

from .contracts import OPEN_STATUSES

TOUCHES_KEPT = 50
HISTORY_KEPT = 50
ASSIGNMENTS_KEPT = 100
PERSON_FIELDS = ("given_name", "family_name", "email", "phone", "job_title", "company_name", "company_size",
                 "industry", "website", "country", "region")
#: What an erasure blanks (the person; the company and the history of what happened stay).
PERSONAL_FIELDS = ("given_name", "family_name", "email", "phone", "job_title", "notes")


def is_open(status: str) -> bool:
    return status in OPEN_STATUSES


def dedup_keys(lead: dict[str, Any]) -> list[str]:
    """The claims an open lead holds: its normalized email and phone."""
    keys = []
    if lead.get("email"):
        keys.append(f"email:{lead['email']}")
    if lead.get("phone"):
        keys.append(f"phone:{lead['phone']}")
    return keys


def describe_key(key: str) -> str:
    kind, _, value = key.partition(":")
    return f"{kind} {value}"


def touch(channel: str, attribution: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
    """One capture of the lead: where it came from."""
    return {"channel": channel, "attribution": {k: v for k, v in (attribution or {}).items() if v}, "at": at}


def new_lead(lead_id: str, fields: dict[str, Any], channel: str, attribution: dict[str, Any] | None,
             contact_id: str | None, now: datetime) -> dict[str, Any]:
    first = touch(channel, attribution, now)
    doc = {"_id": lead_id, "status": "new", **{k: fields.get(k) for k in PERSON_FIELDS},
           "notes": fields.get("notes"), "channel": channel, "attribution": first["attribution"],
           "touches": [first], "contact_id": contact_id, "owner": "", "team": "", "assignments": [],
           "behaviour": {}, "history": [], "erased": False,
           "created_at": now, "updated_at": now, "version": 1}
    doc["dedup_keys"] = dedup_keys(doc)
    return doc


def merged(existing: dict[str, Any], fields: dict[str, Any], capture: dict[str, Any],
           contact_id: str | None, now: datetime) -> dict[str, Any]:
    """The fields a duplicate capture changes on the open lead it merges into: empty
    fields filled (what the lead says already wins), notes appended, the capture kept as a
    touch, a contact id learned."""
    sets: dict[str, Any] = {}
    for key in PERSON_FIELDS:
        if not existing.get(key) and fields.get(key):
            sets[key] = fields[key]
    notes = fields.get("notes")
    if notes and notes not in (existing.get("notes") or ""):
        sets["notes"] = f"{existing['notes']}\n{notes}" if existing.get("notes") else notes
    sets["touches"] = [*(existing.get("touches") or []), capture][-TOUCHES_KEPT:]
    if contact_id and not existing.get("contact_id"):
        sets["contact_id"] = contact_id
    keys = dedup_keys({**existing, **sets})
    if keys != existing.get("dedup_keys"):
        sets["dedup_keys"] = keys
    return sets


def require(lead: dict[str, Any], allowed: tuple[str, ...], action: str) -> None:
    if lead["status"] not in allowed:
        raise FailedPrecondition(f"lead {lead['_id']} is {lead['status']}: only a lead that is "
                                 f"{' or '.join(allowed)} can be {action}",
                                 {"lead_id": lead["_id"], "status": lead["status"]})


def worked(lead: dict[str, Any]) -> dict[str, Any]:
    """A new lead somebody acted on is being worked."""
    return {"status": "working"} if lead["status"] == "new" else {}


def knows_fact(lead: dict[str, Any], ref: str | None) -> bool:
    """The fact ``ref`` (an event id) is among the lead's recent history already."""
    return bool(ref) and any(h.get("ref") == ref for h in lead.get("history") or ())


def fact(lead: dict[str, Any], kind: str, at: datetime, detail: str | None, source: str,
         ref: str | None = None) -> dict[str, Any]:
    """The fields a behavioural fact changes: its count, and a bounded history (``ref``:
    the event that told it, so a second delivery is recognised)."""
    behaviour = dict(lead.get("behaviour") or {})
    behaviour[kind] = int(behaviour.get(kind, 0)) + 1
    entry = {"kind": kind, "at": at, "detail": detail or "", "source": source, "ref": ref}
    return {"behaviour": behaviour, "history": [*(lead.get("history") or []), entry][-HISTORY_KEPT:]}


def assignment(lead: dict[str, Any], owner: str, team: str, reason: str, by: str, at: datetime) -> dict[str, Any]:
    """The fields an assignment changes, with the record of it."""
    record = {"owner": owner, "team": team, "previous_owner": lead.get("owner") or "", "reason": reason,
              "by": by, "at": at}
    return {"owner": owner, "team": team, "assignments": [*(lead.get("assignments") or []), record][-ASSIGNMENTS_KEPT:]}


def erased_fields(now: datetime) -> dict[str, Any]:
    """What erasing the person behind a lead writes: personal fields blank, history of
    touches and facts without their details."""
    return {**{k: None for k in PERSONAL_FIELDS}, "dedup_keys": [], "erased": True, "history": [],
            "touches": [], "updated_at": now}
