"""What an engagement does to the contact's audience: it is remembered (audience.state),
the score is recomputed (engagement.scoring), and a score that crosses the threshold hands
the contact to sales with its history (``lead_qualified``, staged with the same write)."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from crm_common import clock

from ..audience import state as S
from ..audience.writes import Outcome
from ..events import LeadQualified
from . import scoring

LEADS_QUALIFIED = Counter("crm_marketing_leads_qualified_total", "Contacts handed to sales as qualified leads")


def engaged(kind: str, data: dict[str, Any], at, policy: scoring.ScoringPolicy, *, handoff: bool = True):
    """The audience change of an engagement: remembered, scored, and handed to sales when
    the score crosses the threshold (``handoff`` False: a rebuild replaying what happened
    notes the crossing without handing the contact over again)."""
    def change(state, now):
        after = S.apply_engagement(state, kind=kind, message_id=data["message_id"], campaign_id=data["campaign_id"],
                                   channel=data["channel"], at=at, link=data.get("link"))
        if after is state:
            return state
        engagement = after["engagement"]
        before = scoring.score((state.get("engagement") or {}).get("history") or [], now, policy)
        engagement["score"] = scoring.score(engagement["history"], now, policy)
        events = []
        if not after.get("erased") and scoring.crossed(before, engagement["score"], engagement.get("qualified_at"),
                                                       now, policy):
            engagement["qualified_at"] = now
            if not handoff:
                return after
            contact = after.get("contact") or {}
            events.append(LeadQualified(
                contact_id=data["contact_id"], email=contact.get("email"), phone=contact.get("phone"),
                given_name=contact.get("given_name") or "", family_name=contact.get("family_name") or "",
                display_name=contact.get("display_name") or "", score=engagement["score"],
                threshold=policy.threshold, qualified_at=now,
                history=[{**h, "at": clock.to_iso(h["at"])} for h in engagement["history"]]))
            LEADS_QUALIFIED.inc()
        return Outcome(after, events=events)
    return change
