"""What marketing tells sales about people (its events, docs/events.md):

* ``message_opened`` / ``message_clicked``: behaviour of the person's open leads (the
  scoring rules' facts of those names), so their score and grade move;
* ``lead_qualified``: the person's engagement crossed marketing's threshold: a capture on
  the "marketing" channel, a new lead or a touch merged into the open one like any
  capture, with what they did in its notes.

Idempotent by construction: a lead's history names the event that told each fact (two
deliveries racing each other count once), and a capture carries an idempotency key
derived from the event.
"""
from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from crm_common import clock
from crm_common.contracts import Id
from crm_common.nameko.handlers import handles

MARKETING = "marketing"
HISTORY_IN_NOTES = 10
_ID = TypeAdapter(Id)


def _notes(history: list[dict[str, Any]]) -> str:
    lines = [f"{h.get('at', '')[:16].replace('T', ' ')} {h.get('kind', '')} {h.get('link') or h.get('campaign_id', '')}"
             for h in history[:HISTORY_IN_NOTES]]
    return "Engaged with marketing: " + "; ".join(lines)


class MarketingFacts:
    """Handlers of marketing's facts about people (a part of SalesService)."""

    @handles(MARKETING, "message_opened", idempotent=True)
    def on_message_opened(self, event):
        self._engaged(event, "message_opened")

    @handles(MARKETING, "message_clicked", idempotent=True)
    def on_message_clicked(self, event):
        self._engaged(event, "message_clicked")

    def _engaged(self, event: dict[str, Any], kind: str) -> None:
        data = event["data"]
        contact_id = _ID.validate_python(data["contact_id"])
        detail = data.get("link") or data.get("campaign_name") or data.get("campaign_id")
        self._facts_about_contact(contact_id, kind, clock.from_iso(data["at"]), detail, MARKETING, event["event_id"])

    @handles(MARKETING, "lead_qualified", idempotent=True)
    def on_lead_qualified(self, event):
        data = event["data"]
        if not (data.get("email") or data.get("phone")):
            return   # nobody to reach: nothing a salesperson could follow up
        history = data.get("history") or []
        last_campaign = next((h.get("campaign_id") for h in history if h.get("campaign_id")), None)
        self.capture_lead(
            lead={"given_name": data.get("given_name") or None, "family_name": data.get("family_name") or None,
                  "email": data.get("email"), "phone": data.get("phone"), "notes": _notes(history)},
            channel=MARKETING, attribution={"source": MARKETING, "medium": "engagement", "campaign": last_campaign},
            owner=None, contact_id=_ID.validate_python(data["contact_id"]),
            idempotency_key=f"lead_qualified:{event['event_id']}"[:100])
