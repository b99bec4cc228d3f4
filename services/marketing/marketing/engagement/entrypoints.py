"""Engagement's entrypoints: what a contact did with a message (opens, clicks and
unsubscribes through signed tracking links, bounces, complaints and replies reported by
providers), each recorded once per message on the message with its event; and the
handlers of those events that move the contact's audience: its engagement, its score and,
past the threshold, its handoff to sales (``lead_qualified``)."""
from __future__ import annotations

import hashlib
from typing import Any

from prometheus_client import Counter

from crm_common import clock
from crm_common.errors import FailedPrecondition
from crm_common.ids import derived_id
from crm_common.nameko.base import rpc
from crm_common.nameko.handlers import handles

from ..campaigns import domain as D
from ..common import Area, contact_id, event_time
from ..events import ContactUnsubscribed, MessageClicked, MessageFailed, MessageOpened, MessageReplied
from . import contracts as C
from . import tokens
from .handoff import engaged

ENGAGEMENT = Counter("crm_marketing_engagement_total", "What contacts did with messages (first time per message; "
                     "per link for clicks)", ["channel", "kind"])


def _link_key(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()[:20]


class EngagementEntrypoints(Area):
    def _message(self, message_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        message = self.store.campaigns.message(message_id)
        return message, self.store.campaigns.get(message["campaign_id"])

    def _record(self, message, campaign, guard, sets, event_cls, kind: str, **extra) -> bool:
        now = clock.now()
        event = event_cls(contact_id=message["contact_id"], message_id=message["_id"], campaign_id=campaign["_id"],
                          campaign_name=campaign["name"], channel=message["channel"], at=now, **extra)
        parts = [event.type, message["_id"], *(str(v) for v in extra.values())]
        staged = self.outbox.announce(event, event_id=derived_id("evt", *parts))
        done = self.store.campaigns.record_engagement(message["_id"], guard, {**sets, "updated_at": now}, staged)
        if done:
            self.outbox.publish(self.store.campaigns.messages, message["_id"], staged)
            ENGAGEMENT.labels(message["channel"], kind).inc()
        return done

    def _opened(self, message, campaign) -> bool:
        return self._record(message, campaign, {"opened_at": None}, {"opened_at": clock.now()}, MessageOpened, "opened")

    def _unsubscribed(self, message, campaign) -> bool:
        return self._record(message, campaign, {"unsubscribed_at": None}, {"unsubscribed_at": clock.now()},
                            ContactUnsubscribed, "unsubscribed")

    @rpc(C.TrackEngagement)
    def track_engagement(self, req: C.TrackEngagement):
        """The public door of tracking links (a web front calls it and redirects): records
        the open, click or unsubscribe the token names, once per message (per link for
        clicks; a click is an open too). A forged or altered token is INVALID_ARGUMENT."""
        tracked = tokens.verify(self.settings().tracking_secret, req.token)
        message, campaign = self._message(tracked.message_id)
        recorded = False
        if tracked.kind == "open":
            recorded = self._opened(message, campaign)
        elif tracked.kind == "click":
            key = _link_key(tracked.link)
            recorded = self._record(message, campaign, {f"clicks.{key}": {"$exists": False}},
                                    {f"clicks.{key}": {"link": tracked.link, "at": clock.now()}}, MessageClicked,
                                    "clicked", link=tracked.link)
            if message.get("opened_at") is None:
                self._opened(message, campaign)
        else:
            recorded = self._unsubscribed(message, campaign)
        return {"kind": tracked.kind, "message_id": message["_id"], "campaign_id": campaign["_id"],
                "channel": message["channel"], "recorded": recorded, "redirect_url": tracked.link or ""}

    @rpc(C.RecordDeliveryReport)
    def record_delivery_report(self, req: C.RecordDeliveryReport):
        """A provider's report about a message it took: a bounce (the message is bounced), a
        complaint (the contact unsubscribes from the channel), a reply."""
        message, campaign = self._message(req.message_id)
        if req.kind == "bounce":
            if message["status"] not in (D.SENT, D.BOUNCED):
                raise FailedPrecondition(f"message {message['_id']} was not sent ({message['status']})",
                                         {"message_id": message["_id"], "status": message["status"]})
            recorded = self._record(message, campaign, {"status": D.SENT},
                                    {"status": D.BOUNCED, "reason": D.BOUNCED, "detail": req.detail},
                                    MessageFailed, "bounced", status=D.BOUNCED, reason=req.detail or "bounced")
        elif req.kind == "complaint":
            recorded = self._unsubscribed(message, campaign)
        else:
            recorded = self._record(message, campaign, {"replied_at": None}, {"replied_at": clock.now()},
                                    MessageReplied, "replied")
        return {"message_id": message["_id"], "kind": req.kind, "recorded": recorded}

    # -- the audience's engagement, from these events ------------------------------------------
    def _engaged(self, event, kind: str) -> None:
        data = event["data"]
        self.writes().apply(contact_id(data["contact_id"]),
                            engaged(kind, data, event_time(data.get("at"), event), self.settings().scoring))

    @handles("marketing", "message_opened", idempotent=True)
    def on_message_opened(self, event):
        self._engaged(event, "opened")

    @handles("marketing", "message_clicked", idempotent=True)
    def on_message_clicked(self, event):
        self._engaged(event, "clicked")

    @handles("marketing", "message_replied", idempotent=True)
    def on_message_replied(self, event):
        self._engaged(event, "replied")
