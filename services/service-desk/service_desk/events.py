"""Events of the service desk, published on ``service-desk.events`` after the state they
describe is stored (staged in the same single-document write, crm_common.events). Ids
are derived from what they announce (a ticket and its version, a clock and its kind), so
a relayed duplicate carries the same ``event_id`` and consumers drop it.

Plain payloads other services read (keep them additive):

* ``ticket_opened``: ``contact_id``, ``category``, ``priority``, ``channel`` (sales' lead
  scoring reads these), the ticket's group and SLA due instants;
* ``ticket_resolved`` and ``csat_received``: ``contact_id`` and, for CSAT, ``score``
  1-5 (marketing's audiences read these).

Opened, resolved and CSAT also reach the contact's timeline. Free text a customer wrote
(descriptions, replies, comments) never travels on the bus, except a ticket's subject
in ``ticket_opened`` / ``ticket_resolved`` and the CSAT comment, which the timeline shows
(contacts blanks its timeline on erasure).

Consumed (see the registry): contacts' contact_created / contact_updated /
contact_erased (display names; erasure anonymizes tickets), loyalty's member_enrolled /
tier_changed (the tier) and sales' purchase_summary_changed (lifetime value per
currency): the read model that chooses SLA policies (service_desk.customers).
"""
from __future__ import annotations

from typing import ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import Reference, TimelineFact

# A ticket's channel as the contact's timeline names channels.
TIMELINE_CHANNEL = {"email": "email", "phone": "phone", "chat": "chat", "web_form": "web", "social": "social",
                    "bot": "chat"}


class _TicketEvent(Event):
    subject_type: ClassVar[str] = "ticket"
    ticket_id: Id
    contact_id: Id

    def subject(self) -> str:
        return self.ticket_id

    def _fact(self, at, summary: str, *, channel: str = "other", direction: str = "internal", **data) -> TimelineFact:
        return self.fact(occurred_at=at, summary=summary, channel=TIMELINE_CHANNEL.get(channel, "other"),
                         direction=direction, reference=Reference(type="ticket", id=self.ticket_id), data=data)


class TicketOpened(_TicketEvent):
    """A ticket was opened, from any channel (a bot handoff is channel ``bot``). The due
    instants are those of the policy chosen at opening (null: no target)."""

    type: ClassVar[str] = "ticket_opened"
    ticket_subject: str
    category: str
    priority: str
    channel: str
    group: str
    order_ref: str | None = None
    tier: str
    segment: str
    policy_id: str | None = None
    first_response_due_at: Timestamp | None = None
    resolution_due_at: Timestamp | None = None
    opened_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.opened_at, f"Opened a ticket: {self.ticket_subject}", channel=self.channel,
                          direction="inbound", category=self.category, priority=self.priority)


class TicketAssigned(_TicketEvent):
    """A ticket got a group and (or) an agent: by the routing rules and round-robin
    (``reason`` routing / round_robin), by hand (manual) or for want of an available agent
    (queued: ``assignee`` is ""). ``previous_*`` are "" the first time."""

    type: ClassVar[str] = "ticket_assigned"
    group: str
    assignee: str
    previous_group: str
    previous_assignee: str
    reason: str
    assigned_at: Timestamp


class TicketReplied(_TicketEvent):
    """A message was added to a ticket's conversation: a public reply by an agent or the
    customer, or an internal note (``internal``; never shown to the customer). No text:
    read it with ListMessages. ``first_response`` marks the first public agent reply."""

    type: ClassVar[str] = "ticket_replied"
    message_id: str
    author: str
    author_type: str                 # agent | customer | bot
    internal: bool
    first_response: bool
    replied_at: Timestamp


class TicketStatusChanged(_TicketEvent):
    """A ticket moved between new, open, pending (``pending_reason`` customer or
    third_party), resolved and closed; ``by`` is who did it (``service:service-desk``
    when a customer's reply reopened it or the reopen window closed it)."""

    type: ClassVar[str] = "ticket_status_changed"
    from_status: str
    to_status: str
    pending_reason: str
    by: str
    changed_at: Timestamp


class TicketSlaChanged(_TicketEvent):
    """The ticket's SLA policy or targets were chosen again (the customer's tier or value
    changed, or the priority did), the time elapsed so far kept."""

    type: ClassVar[str] = "ticket_sla_changed"
    policy_id: str | None = None
    previous_policy_id: str | None = None
    tier: str
    segment: str
    priority: str
    first_response_due_at: Timestamp | None = None
    resolution_due_at: Timestamp | None = None
    changed_at: Timestamp


class _SlaAlert(_TicketEvent):
    target: str                      # first_response | resolution
    policy_id: str | None = None
    target_seconds: float
    elapsed_seconds: float
    due_at: Timestamp                # the instant the alert fell due (bench: how late it was published)
    priority: str
    group: str
    assignee: str


class TicketSlaWarning(_SlaAlert):
    """A target reached its warning share (``warning_percent`` of the policy, 80 % by
    default) without being met. Published once per target, whatever the number of
    replicas."""

    type: ClassVar[str] = "ticket_sla_warning"
    warned_at: Timestamp


class TicketSlaBreached(_SlaAlert):
    """A target was missed. Published once per target, whatever the number of replicas;
    the ticket is escalated (``ticket_escalated``)."""

    type: ClassVar[str] = "ticket_sla_breached"
    breached_at: Timestamp


class TicketEscalated(_TicketEvent):
    """A breach escalated the ticket: its priority went up one step (up to urgent) and
    ``escalation_group`` is told (the group's escalation group, or the default one)."""

    type: ClassVar[str] = "ticket_escalated"
    target: str
    from_priority: str
    to_priority: str
    group: str
    assignee: str
    escalation_group: str
    escalated_at: Timestamp


class TicketResolved(_TicketEvent):
    """A ticket was resolved. ``first_response_met`` / ``resolution_met``: within target
    (null without a target)."""

    type: ClassVar[str] = "ticket_resolved"
    ticket_subject: str
    category: str
    priority: str
    channel: str
    group: str
    assignee: str
    first_response_met: bool | None = None
    resolution_met: bool | None = None
    resolved_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.resolved_at, f"Ticket resolved: {self.ticket_subject}", channel=self.channel,
                          direction="outbound", category=self.category)


class SatisfactionRequested(_TicketEvent):
    """A resolved ticket asks its customer how satisfied they are (whoever delivers
    surveys sends it on ``channel``; the answer comes back with RecordSatisfaction)."""

    type: ClassVar[str] = "satisfaction_requested"
    channel: str
    assignee: str
    requested_at: Timestamp


class CsatReceived(_TicketEvent):
    """The customer rated the service of a resolved ticket: ``score`` 1 (bad) to 5
    (excellent) and an optional comment, against the agent (``assignee``) and group."""

    type: ClassVar[str] = "csat_received"
    score: int
    comment: str
    assignee: str
    group: str
    channel: str
    tier: str
    received_at: Timestamp

    def timeline(self) -> TimelineFact:
        comment = f": {self.comment}" if self.comment else ""
        return self._fact(self.received_at, f"Rated the support {self.score}/5{comment}", channel=self.channel,
                          direction="inbound", score=self.score)
