"""Pipeline and deal rules as pure functions (no I/O; ``now`` is passed in).

A pipeline is its open stages in order, each with a win probability. A deal is ``open``
in one of them, or closed: ``won`` (with the order it produced, if any) or ``lost`` (with
a reason). Every move is kept in ``stage_history`` (``{stage_id, entered_at, left_at,
by}``; the outcomes appear there as the pseudo-stages ``won`` and ``lost``), so the time
spent in each stage and the conversion between stages can be computed later; reopening
a closed deal is allowed and recorded.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_common.errors import FailedPrecondition, InvalidArgument

DEFAULT_PIPELINE_ID = "pip_default"
DEFAULT_PIPELINE: dict[str, Any] = {
    "_id": DEFAULT_PIPELINE_ID, "name": "Sales", "default": True,
    "stages": [
        {"id": "qualification", "name": "Qualification", "probability": 10},
        {"id": "needs_analysis", "name": "Needs analysis", "probability": 25},
        {"id": "proposal", "name": "Proposal", "probability": 50},
        {"id": "negotiation", "name": "Negotiation", "probability": 75},
    ],
}
WON, LOST, OPEN = "won", "lost", "open"
OUTCOME_PROBABILITY = {WON: 100, LOST: 0}


def stage(pipeline: dict[str, Any], stage_id: str | None, field: str = "stage_id") -> dict[str, Any]:
    """The open stage ``stage_id`` of ``pipeline`` (its first stage for None)."""
    stages = pipeline["stages"]
    if stage_id is None:
        return stages[0]
    for s in stages:
        if s["id"] == stage_id:
            return s
    raise InvalidArgument.field(field, f"pipeline {pipeline['_id']} has no stage {stage_id!r}; its stages are "
                                       + ", ".join(s["id"] for s in stages))


def probability(deal: dict[str, Any], pipeline: dict[str, Any] | None) -> int:
    if deal["status"] != OPEN:
        return OUTCOME_PROBABILITY[deal["status"]]
    for s in (pipeline or {}).get("stages") or ():
        if s["id"] == deal["stage_id"]:
            return int(s["probability"])
    return 0


def _entered(stage_id: str, now: datetime, by: str) -> dict[str, Any]:
    return {"stage_id": stage_id, "entered_at": now, "left_at": None, "by": by}


def _history_to(deal: dict[str, Any], stage_id: str, now: datetime, by: str) -> list[dict[str, Any]]:
    history = [dict(h) for h in deal.get("stage_history") or []]
    if history and history[-1].get("left_at") is None:
        history[-1]["left_at"] = now
    return [*history, _entered(stage_id, now, by)]


def new_deal(deal_id: str, fields: dict[str, Any], pipeline: dict[str, Any], stage_id: str, owner: str,
             team: str, now: datetime, by: str) -> dict[str, Any]:
    return {"_id": deal_id, "name": fields["name"], "contact_id": fields["contact_id"],
            "company_id": fields.get("company_id"), "amount": fields["amount"],
            "expected_close_date": fields.get("expected_close_date"), "products": list(fields.get("products") or []),
            "pipeline_id": pipeline["_id"], "stage_id": stage_id, "status": OPEN, "owner": owner, "team": team,
            "lead_id": fields.get("lead_id"), "stage_history": [_entered(stage_id, now, by)],
            "closed_at": None, "won": None, "lost": None, "reopened": [],
            "created_at": now, "updated_at": now, "version": 1}


def _require_open(deal: dict[str, Any], action: str) -> None:
    if deal["status"] != OPEN:
        raise FailedPrecondition(f"deal {deal['_id']} is {deal['status']}: reopen it before you {action}",
                                 {"deal_id": deal["_id"], "status": deal["status"]})


def move(deal: dict[str, Any], pipeline: dict[str, Any], stage_id: str, now: datetime, by: str) -> dict[str, Any]:
    """The fields moving an open deal to ``stage_id`` changes ({} when it is there already)."""
    _require_open(deal, "move it")
    stage(pipeline, stage_id)
    if deal["stage_id"] == stage_id:
        return {}
    return {"stage_id": stage_id, "stage_history": _history_to(deal, stage_id, now, by)}


def win(deal: dict[str, Any], order_id: str | None, note: str | None, now: datetime, by: str) -> dict[str, Any]:
    _require_open(deal, "win it")
    return {"status": WON, "closed_at": now, "won": {"order_id": order_id, "note": note, "at": now, "by": by},
            "stage_history": _history_to(deal, WON, now, by)}


def lose(deal: dict[str, Any], reason: str, note: str | None, now: datetime, by: str) -> dict[str, Any]:
    _require_open(deal, "lose it")
    return {"status": LOST, "closed_at": now, "lost": {"reason": reason, "note": note, "at": now, "by": by},
            "stage_history": _history_to(deal, LOST, now, by)}


def last_open_stage(deal: dict[str, Any]) -> str | None:
    for h in reversed(deal.get("stage_history") or []):
        if h["stage_id"] not in (WON, LOST):
            return h["stage_id"]
    return None


def reopen(deal: dict[str, Any], pipeline: dict[str, Any], stage_id: str | None, now: datetime,
           by: str) -> dict[str, Any]:
    if deal["status"] == OPEN:
        raise FailedPrecondition(f"deal {deal['_id']} is open already", {"deal_id": deal["_id"]})
    target = stage(pipeline, stage_id or last_open_stage(deal))["id"]
    record = {"from_status": deal["status"], "to_stage": target, "at": now, "by": by}
    return {"status": OPEN, "stage_id": target, "closed_at": None, "won": None, "lost": None,
            "stage_history": _history_to(deal, target, now, by),
            "reopened": [*(deal.get("reopened") or []), record]}


def time_in_stages(deal: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Each visit of a stage with how long it lasted (until now for the current one)."""
    return [{**h, "seconds": int(((h.get("left_at") or now) - h["entered_at"]).total_seconds())}
            for h in deal.get("stage_history") or []]
