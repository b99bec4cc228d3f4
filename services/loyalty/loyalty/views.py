"""What the loyalty service answers with: members and ledger entries in their wire
form (docs/rpc.md; the fields of crm.v1.Member and LedgerEntry)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common import clock

from . import domain


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["_id"], "contact_id": entry["contact_id"], "kind": entry["kind"],
            "points": entry["points"], "balance_after": entry["balance_after"], "owed": entry.get("owed") or 0,
            "owed_after": entry.get("owed_after") or 0, "source": entry.get("source"),
            "source_ref": entry.get("source_ref"), "reason": entry.get("reason"), "amount": entry.get("amount"),
            "occurred_at": clock.to_iso(entry["occurred_at"]), "principal": entry.get("principal") or "",
            "request_id": entry.get("request_id") or ""}


def member_view(member, now: datetime) -> dict[str, Any]:
    """A member (loyalty.store.Member) as the wire form."""
    state = member.state
    expiry = domain.next_expiry(state)
    return {"contact_id": member.contact_id, "member_id": state.member_id, "status": state.status,
            "tier": state.tier, "balance": state.balance, "points_owed": state.owed,
            "points_earned_12m": domain.points_earned_12m(state.lots, now),
            "enrolled_at": clock.to_iso(state.enrolled_at), "display_name": member.display_name,
            "version": member.version, "erased": member.erased,
            "next_expiry": {"points": expiry["points"], "at": clock.to_iso(expiry["at"])} if expiry else None}
