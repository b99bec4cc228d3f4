"""What the service desk answers with: stored documents shaped as the crm.v1 messages of
proto/crm/v1/service_desk.proto (docs/rpc.md)."""
from __future__ import annotations

from typing import Any

from crm_common import clock

from .sla.clocks import TARGETS, Sla

iso = clock.to_iso


def clock_view(sla: Sla, target: str) -> dict[str, Any]:
    c = sla.clock(target)
    return {"target_seconds": c.target or 0, "elapsed_seconds": c.elapsed, "running": c.running,
            "paused": not c.running and not c.stopped, "due_at": iso(c.due_at), "warn_at": iso(c.warn_at),
            "stopped_at": iso(c.stopped_at), "warned": c.warned, "breached": c.breached, "met": c.met}


def sla_view(doc: dict[str, Any] | None) -> dict[str, Any]:
    sla = Sla.from_doc(doc)
    return {"policy_id": sla.policy_id or "", "policy_name": sla.policy_name, "calendar_id": sla.calendar_id or "",
            "priority": sla.priority, "tier": sla.tier, "segment": sla.segment,
            "warning_percent": sla.warning_percent, **{t: clock_view(sla, t) for t in TARGETS}}


def ticket_view(doc: dict[str, Any], customer_name: str = "") -> dict[str, Any]:
    return {
        "id": doc["_id"], "contact_id": doc["contact_id"], "customer_name": customer_name,
        "subject": doc["subject"], "description": doc.get("description") or "", "category": doc["category"],
        "priority": doc["priority"], "channel": doc["channel"], "order_ref": doc.get("order_ref") or "",
        "status": doc["status"], "pending_reason": doc.get("pending_reason") or "", "group": doc.get("group") or "",
        "assignee": doc.get("assignee") or "", "opened_at": iso(doc["opened_at"]),
        "first_response_at": iso(doc.get("first_response_at")), "resolved_at": iso(doc.get("resolved_at")),
        "closed_at": iso(doc.get("closed_at")), "reopen_until": iso(doc.get("close_at")),
        "reopened_count": doc.get("reopened_count") or 0, "message_count": doc.get("message_count") or 0,
        "escalated": bool(doc.get("escalated")), "sla": sla_view(doc.get("sla")),
        "satisfaction": ({"score": doc["csat"]["score"], "comment": doc["csat"].get("comment") or "",
                          "received_at": iso(doc["csat"]["at"])} if doc.get("csat") else None),
        "history": [{"at": iso(h["at"]), "by": h.get("by") or "", "what": h["what"],
                     "from_value": "" if h.get("from") is None else str(h["from"]),
                     "to_value": "" if h.get("to") is None else str(h["to"]),
                     "detail": ", ".join(f"{k}={v}" for k, v in sorted(h.items())
                                         if k not in ("at", "by", "what", "from", "to") and v not in (None, ""))}
                    for h in doc.get("history") or ()],
        "erased": bool(doc.get("erased")), "version": doc["version"], "updated_at": iso(doc.get("updated_at")),
    }


def message_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "ticket_id": doc["ticket_id"], "seq": doc["seq"], "author": doc["author"],
            "author_type": doc["author_type"], "internal": bool(doc["internal"]), "body": doc["body"],
            "at": iso(doc["at"])}


def customer_message_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the customer sees of a public message: who wrote (agent or them), not the
    agent's account."""
    return {"id": doc["_id"], "ticket_id": doc["ticket_id"], "seq": doc["seq"], "author_type": doc["author_type"],
            "body": doc["body"], "at": iso(doc["at"])}


def calendar_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "time_zone": doc["time_zone"],
            "hours": [dict(h) for h in doc.get("hours") or ()], "holidays": list(doc.get("holidays") or ()),
            "version": doc.get("version", 0)}


def policy_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "tiers": list(doc.get("tiers") or ()),
            "segments": list(doc.get("segments") or ()), "calendar_id": doc.get("calendar_id") or "",
            "warning_percent": doc.get("warning_percent") or 0,
            "targets": [dict(t) for t in doc.get("targets") or ()], "version": doc.get("version", 0)}


def group_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "categories": list(doc.get("categories") or ()),
            "channels": list(doc.get("channels") or ()), "escalation_group": doc.get("escalation_group") or "",
            "version": doc.get("version", 0)}


def agent_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "groups": list(doc.get("groups") or ()),
            "available": bool(doc.get("available")), "max_open": doc.get("max_open") or 0,
            "open_tickets": doc.get("open_count") or 0, "last_assigned_at": iso(doc.get("last_assigned_at")),
            "version": doc.get("version", 0)}


def article_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "title": doc["title"], "body": doc["body"], "tags": list(doc.get("tags") or ()),
            "locale": doc["locale"], "status": doc["status"], "version": doc["version"],
            "created_at": iso(doc["created_at"]), "updated_at": iso(doc["updated_at"])}


def conversation_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "contact_id": doc["contact_id"], "locale": doc.get("locale") or "",
            "status": doc.get("status") or "open", "ticket_id": doc.get("ticket_id") or "",
            "turns": [{"role": t["role"], "text": t["text"], "at": iso(t["at"]),
                       "article_ids": list(t.get("article_ids") or ()), "confidence": t.get("confidence") or 0.0}
                      for t in doc.get("turns") or ()]}
