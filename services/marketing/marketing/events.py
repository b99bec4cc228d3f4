"""Events of the marketing service, published on ``marketing.events`` after the state
they describe is stored (staged in the same single-document write, crm_common.events).
Event ids are derived from what they announce (a membership change of one audience
version, a message and what happened to it), so a relayed duplicate carries the same
``event_id`` and consumers drop it.

Consumed (see the registry): contacts' contact_created / contact_updated /
consent_changed / contact_erased, sales' order_paid / order_refunded /
purchase_summary_changed, loyalty's member_enrolled / tier_changed / points_*, and its
own message_opened / message_clicked / message_replied (the audience's engagement), all
into the audience read model (marketing.audience).

What others do with them: sales raises a lead's score from ``message_opened`` /
``message_clicked`` and turns ``lead_qualified`` into a lead (or updates the open one);
contacts withdraws the channel's consent on ``contact_unsubscribed``; the contact's
timeline shows what was sent and what the contact did with it.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import Reference, TimelineFact

Channel = Literal["email", "sms"]
_NOUN = {"email": "email", "sms": "SMS"}


# -- segments ----------------------------------------------------------------------------

class SegmentEntered(Event):
    """A contact entered a segment: a dynamic segment's rule started to hold for it (within
    a second of the fact that made it hold), or it was added to a static list.
    ``reasons`` are the conditions that held; ``initial`` is true while a new (or changed)
    segment is being filled with the contacts who matched already."""

    type: ClassVar[str] = "segment_entered"
    contact_id: Id
    segment_id: Id
    segment_name: str
    kind: Literal["dynamic", "static"]
    reasons: list[str] = []
    initial: bool = False
    at: Timestamp


class SegmentLeft(Event):
    """A contact left a segment: the rule stopped holding, it was removed from a static
    list, the segment was archived, or the contact was erased (``reason``)."""

    type: ClassVar[str] = "segment_left"
    contact_id: Id
    segment_id: Id
    segment_name: str
    kind: Literal["dynamic", "static"]
    reason: str
    at: Timestamp


# -- campaigns ---------------------------------------------------------------------------

class _CampaignEvent(Event):
    subject_type: ClassVar[str] = "campaign"
    campaign_id: Id
    name: str
    channel: Channel

    def subject(self) -> str:
        return self.campaign_id


class CampaignStarted(_CampaignEvent):
    """A campaign's send began: its audience was resolved into ``recipients`` messages
    (queued, or skipped with a reason)."""

    type: ClassVar[str] = "campaign_started"
    recipients: int
    started_at: Timestamp


class CampaignCompleted(_CampaignEvent):
    """Every message of a campaign reached its end (sent, failed, bounced or skipped), or
    it was cancelled; ``progress`` holds the final counts (as GetCampaignProgress)."""

    type: ClassVar[str] = "campaign_completed"
    state: Literal["completed", "cancelled"]
    progress: dict[str, Any]
    completed_at: Timestamp


# -- messages ------------------------------------------------------------------------------

class _MessageEvent(Event):
    contact_id: Id
    message_id: Id
    campaign_id: Id
    campaign_name: str = ""
    channel: Channel
    at: Timestamp

    def _fact(self, summary: str, direction: str, **data: Any) -> TimelineFact:
        return self.fact(occurred_at=self.at, summary=summary, channel=self.channel, direction=direction,
                         reference=Reference(type="message", id=self.message_id),
                         data={"campaign_id": self.campaign_id, **data})

    @property
    def _what(self) -> str:
        return f"{_NOUN[self.channel]} “{self.campaign_name}”" if self.campaign_name else _NOUN[self.channel]


class MessageSent(_MessageEvent):
    """A campaign's message was accepted by the email server or the SMS provider."""

    type: ClassVar[str] = "message_sent"

    def timeline(self) -> TimelineFact:
        return self._fact(f"Sent {self._what}", "outbound")


class MessageFailed(_MessageEvent):
    """A message could not be delivered: ``bounced`` (the server refused the recipient
    for good) or ``failed`` (still failing after the retries, or interrupted: never sent
    twice, so never retried after a crash mid-send)."""

    type: ClassVar[str] = "message_failed"
    status: Literal["bounced", "failed"]
    reason: str

    def timeline(self) -> TimelineFact:
        return self._fact(f"Could not deliver {self._what} ({self.status})", "outbound", reason=self.reason)


class MessageOpened(_MessageEvent):
    """The contact opened a message (its tracking pixel was loaded): once per message.
    Sales raises the lead's score from it."""

    type: ClassVar[str] = "message_opened"

    def timeline(self) -> TimelineFact:
        return self._fact(f"Opened {self._what}", "inbound")


class MessageClicked(_MessageEvent):
    """The contact followed a link of a message (``link``): once per message and link.
    Sales raises the lead's score from it."""

    type: ClassVar[str] = "message_clicked"
    link: str

    def timeline(self) -> TimelineFact:
        return self._fact(f"Clicked {self.link} in {self._what}", "inbound", link=self.link)


class MessageReplied(_MessageEvent):
    """The contact replied to a message (reported by the mail or SMS provider)."""

    type: ClassVar[str] = "message_replied"

    def timeline(self) -> TimelineFact:
        return self._fact(f"Replied to {self._what}", "inbound")


class ContactUnsubscribed(_MessageEvent):
    """The contact unsubscribed from a channel through a message's link (or a complaint
    reported by the provider): contacts withdraws the channel's consent, so every later
    send honours it."""

    type: ClassVar[str] = "contact_unsubscribed"

    def timeline(self) -> TimelineFact:
        return self._fact(f"Unsubscribed from {_NOUN[self.channel]} (via {self._what})", "inbound")


# -- the audience ----------------------------------------------------------------------------

class LeadQualified(Event):
    """The contact's engagement crossed the lead threshold: sales turns it into a lead or
    updates the open one. ``history`` is what the contact did, newest first (opens,
    clicks with their link, replies: ``{at, kind, campaign_id, message_id, channel, link}``)."""

    type: ClassVar[str] = "lead_qualified"
    contact_id: Id
    email: str | None = None
    phone: str | None = None
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    score: int
    threshold: int
    history: list[dict[str, Any]]
    qualified_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self.fact(occurred_at=self.qualified_at, summary=f"Handed to sales as a qualified lead "
                                                                f"(engagement score {self.score})",
                         data={"score": self.score, "threshold": self.threshold})


class SurveyAnswered(Event):
    """The contact answered a survey about what they expect (preferred channel and time,
    what they value); the answers are in the audience from now on."""

    type: ClassVar[str] = "survey_answered"
    contact_id: Id
    survey: str
    answers: dict[str, Any]
    at: Timestamp

    def timeline(self) -> TimelineFact:
        said = ", ".join(f"{k.replace('_', ' ')}: {', '.join(v) if isinstance(v, list) else v}"
                         for k, v in self.answers.items() if v not in (None, "", []))
        return self.fact(occurred_at=self.at, summary=f"Answered the survey “{self.survey}”" + (f": {said}" if said else ""),
                         direction="inbound", data={"survey": self.survey, "answers": self.answers})
