"""The audit trail: who changed what, when, in which request, with the before and after
of the fields that changed; and who was refused. Append-only, one ``audit`` collection
in each service's own database, readable through the gateway (``crm.v1.Audit``).

An entry rides the outbox (crm_common.events): it is staged as an envelope of type
``audit_recorded`` in the SAME document write as the change it records, and the outbox
writes it to ``audit`` instead of the bus when it publishes (or the relay, after a
crash), with the envelope's id as ``_id``. So a change is never stored without its
entry, an entry never exists for a change that did not happen, and a replay writes it
once. Entries about a contact carry its ``contact_id``; erasing the contact replaces
every before/after value of its entries with ``[erased]`` and keeps the entries.
"""
from __future__ import annotations

from typing import Any, Iterable

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from . import events
from .access import Principal
from .contracts import OptText, Page, Request

AUDIT = "audit"
AUDIT_RECORDED = "audit_recorded"     # a staged envelope's type: never on the bus
ERASED = "[erased]"


class ListAudit(Request, Page):
    """Entries newest first: of one record (``record_id``), of one principal
    (``principal``, e.g. ``user:alice``), or all; a reader whose scope is own (team) sees
    the entries of records they (their team) own."""

    record_id: OptText(200) = None
    principal: OptText(200) = None


def changed(before: dict[str, Any], after: dict[str, Any], fields: Iterable[str] | None = None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The before and after of the fields (of ``fields``, default all) whose values differ;
    a side that lacks a field (nothing before a create) does not name it."""
    keys = [k for k in (fields if fields is not None else dict.fromkeys([*before, *after]))
            if before.get(k) != after.get(k)]
    return {k: before[k] for k in keys if k in before}, {k: after[k] for k in keys if k in after}


def _who(principal: Principal | None) -> dict[str, Any]:
    if principal is None:
        return {"subject": "", "roles": [], "via": ""}
    return {"subject": principal.subject, "roles": list(principal.roles), "via": principal.via}


def envelope(*, source: str, record_type: str, record_id: str, operation: str, principal: Principal | None,
             before: dict[str, Any], after: dict[str, Any], correlation_id: str | None,
             contact_id: str | None = None, owner: str | None = None, team: str | None = None) -> dict[str, Any]:
    """The envelope to stage with the change (values JSON-shaped: the record's view).
    ``owner``/``team``: the record's, for records that have one (the entry is then
    readable by its owner, and by their team's manager: scopes own / team)."""
    return events.envelope(AUDIT_RECORDED, source=source, subject=record_id, subject_type=record_type,
                           correlation_id=correlation_id,
                           data={"operation": operation, "principal": _who(principal), "before": before,
                                 "after": after, "contact_id": contact_id, "owner": owner or None,
                                 "team": team or None})


def _entry(env: dict[str, Any]) -> dict[str, Any]:
    data, who = env["data"], env["data"]["principal"]
    # top-level fields: lookups by principal use an index (dotted paths scan locally)
    return {"_id": env["event_id"], "at": env["occurred_at"], "service": env["source"],
            "record_type": env["subject_type"], "record_id": env["subject"], "operation": data["operation"],
            "principal": who["subject"], "roles": who["roles"], "via": who["via"],
            "request_id": env.get("correlation_id") or "",
            "before": data["before"], "after": data["after"], "contact_id": data.get("contact_id"),
            "owner": data.get("owner"), "team": data.get("team")}


def record(db: Database, env: dict[str, Any]) -> None:
    """Write a staged entry (idempotent: the envelope's id is the entry's)."""
    try:
        db[AUDIT].insert_one(_entry(env))
    except DuplicateKeyError:
        pass


def record_denied(db: Database, *, service: str, method: str, principal: Principal | None, reason: str,
                  request_id: str | None) -> None:
    """A refused call (nothing changed, so nothing to stage): written at once."""
    env = envelope(source=service, record_type="rpc", record_id=f"{service}.{method}", operation="denied",
                   principal=principal, before={}, after={"reason": reason[:300]}, correlation_id=request_id)
    record(db, env)


def anonymize(db: Database, contact_id: str, *, records: list[str] = ()) -> int:
    """Every entry about the contact (and about ``records``, e.g. leads of that person
    recorded before they were linked to the contact) keeps which fields changed, not
    their values."""
    done = 0
    docs = [*db[AUDIT].find({"contact_id": contact_id}, {"before": 1, "after": 1, "anonymized": 1}),
            *(db[AUDIT].find({"record_id": {"$in": list(records)}}, {"before": 1, "after": 1, "anonymized": 1})
              if records else ())]
    for doc in docs:
        if doc.get("anonymized"):
            continue
        db[AUDIT].update_one({"_id": doc["_id"]}, {"$set": {
            "before": {k: ERASED for k in doc.get("before") or {}},
            "after": {k: ERASED for k in doc.get("after") or {}}, "anonymized": True}})
        done += 1
    return done


def ensure_indexes(db: Database) -> None:
    db[AUDIT].create_index("record_id")
    db[AUDIT].create_index("principal")
    db[AUDIT].create_index("contact_id")
    db[AUDIT].create_index("owner")      # a record owner's own entries (scope own)
    db[AUDIT].create_index("team")       # ... their team's (scope team)


def page(db: Database, req: ListAudit, after_id: str | None, scope: dict[str, Any] | None = None
         ) -> list[dict[str, Any]]:
    """Up to ``req.size + 1`` entries, newest first (ids are time-ordered), after
    ``after_id``, within the reader's ``scope`` (crm_common.access: the entries of records
    they own, or their team owns; every entry for scope all)."""
    query: dict[str, Any] = {"_id": {"$lt": after_id} if after_id else {"$gt": ""}, **(scope or {})}
    if req.record_id:
        query["record_id"] = req.record_id
    if req.principal:
        query["principal"] = req.principal
    return list(db[AUDIT].find(query).sort("_id", DESCENDING).limit(req.size + 1))


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "at": doc["at"], "service": doc["service"],
            "record_type": doc["record_type"], "record_id": doc["record_id"], "operation": doc["operation"],
            "principal": doc["principal"], "roles": doc["roles"], "via": doc["via"],
            "request_id": doc["request_id"], "before": doc["before"],
            "after": doc["after"]}
