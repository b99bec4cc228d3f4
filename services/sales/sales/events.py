"""Events of the sales service, published on ``sales.events`` after the state they
describe is stored (staged in the same single-document write, crm_common.events).
Event ids are derived from what they announce (a lead and its version, an order and its
status), so a relayed duplicate carries the same ``event_id`` and consumers drop it.

Payload shapes: ``lead``, ``deal``, ``activity`` and ``order`` are the record exactly as
the matching ``get_*`` RPC returns it (docs/rpc.md, proto/crm/v1/sales.proto); money is
``{"amount_minor", "currency"}``. Facts about a known contact (``contact_id`` set) also
reach the contact's timeline (crm_common.timeline).

Consumed (see the registry): contacts' contact_created / contact_updated /
contact_erased (the contacts sales knows: existence, contact points for conversion,
erasure), its own order_paid / order_refunded (the purchase summary per contact), the
service desk's ticket_opened and marketing's message_opened / message_clicked (behaviour
of open leads), and marketing's lead_qualified (a capture on the marketing channel:
sales.marketing_facts).
"""
from __future__ import annotations

from typing import Any, ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.money import Money
from crm_common.timeline import Reference, TimelineFact


def _money(m: dict[str, Any] | Money | None) -> str:
    if m is None:
        return ""
    amount, currency = (m.amount_minor, m.currency) if isinstance(m, Money) else (m["amount_minor"], m["currency"])
    return f"{currency} {amount / 100:,.2f}"


# -- leads ---------------------------------------------------------------------------------

class _LeadEvent(Event):
    subject_type: ClassVar[str] = "lead"
    lead_id: Id
    contact_id: Id | None = None      # set once the lead is known to be (or became) a contact

    def subject(self) -> str:
        return self.lead_id

    def _fact(self, at, summary: str, **data: Any) -> TimelineFact | None:
        if not self.contact_id:
            return None
        return self.fact(occurred_at=at, summary=summary, reference=Reference(type="lead", id=self.lead_id),
                         data=data)


class LeadCreated(_LeadEvent):
    """A lead was captured (from any channel, or handed over by marketing)."""

    type: ClassVar[str] = "lead_created"
    lead: dict[str, Any]

    def timeline(self) -> TimelineFact | None:
        return self._fact(self.lead["created_at"], f"Became a lead ({self.lead['channel']})",
                          channel=self.lead["channel"], source=(self.lead.get("attribution") or {}).get("source"))


class LeadMerged(_LeadEvent):
    """A capture of a person who already has an open lead (same email or phone) was merged
    into it: ``touch`` is the new capture's channel and attribution."""

    type: ClassVar[str] = "lead_merged"
    touch: dict[str, Any]
    merged_at: Timestamp

    def timeline(self) -> TimelineFact | None:
        return self._fact(self.merged_at, f"Got in touch again ({self.touch.get('channel')})", touch=self.touch)


class LeadAssigned(_LeadEvent):
    """A lead got an owner: by the assignment rules (territory, round-robin, capacity), by
    hand, or because its owner was deactivated. ``previous_owner`` is "" the first time."""

    type: ClassVar[str] = "lead_assigned"
    owner: str
    team: str
    previous_owner: str
    reason: str                      # territory | round_robin | manual | owner_deactivated | unassigned
    assigned_at: Timestamp

    def timeline(self) -> TimelineFact | None:
        return self._fact(self.assigned_at, f"Lead assigned to {self.owner or 'nobody'}", owner=self.owner,
                          team=self.team, reason=self.reason)


class LeadScored(_LeadEvent):
    """A lead's grade changed after its score was recomputed (a demographic change or a
    behavioural fact); published only when the grade moves."""

    type: ClassVar[str] = "lead_scored"
    score: int
    grade: str
    previous_grade: str
    scored_at: Timestamp


class LeadQualificationChanged(_LeadEvent):
    """A lead was qualified, disqualified (``reason`` from the list, ``note`` free text)
    or reopened."""

    type: ClassVar[str] = "lead_qualification_changed"
    status: str                      # qualified | disqualified | working
    reason: str = ""
    note: str = ""
    changed_at: Timestamp

    def timeline(self) -> TimelineFact | None:
        why = f": {self.reason}" if self.reason else ""
        return self._fact(self.changed_at, f"Lead {self.status}{why}", status=self.status, reason=self.reason)


class LeadConverted(_LeadEvent):
    """A qualified lead became a contact, a company and (optionally) a deal."""

    type: ClassVar[str] = "lead_converted"
    company_id: Id | None = None
    deal_id: Id | None = None
    converted_at: Timestamp

    def timeline(self) -> TimelineFact | None:
        return self._fact(self.converted_at, "Lead converted" + (" with a deal" if self.deal_id else ""),
                          company_id=self.company_id, deal_id=self.deal_id)


# -- deals -----------------------------------------------------------------------------------

class _DealEvent(Event):
    subject_type: ClassVar[str] = "deal"
    deal_id: Id
    contact_id: Id
    deal: dict[str, Any]

    def subject(self) -> str:
        return self.deal_id

    def _fact(self, at, summary: str, **data: Any) -> TimelineFact:
        return self.fact(occurred_at=at, summary=summary, reference=Reference(type="deal", id=self.deal_id),
                         data={"name": self.deal["name"], "amount": self.deal["amount"], **data})


class DealCreated(_DealEvent):
    """A deal was opened (by hand or by converting a lead)."""

    type: ClassVar[str] = "deal_created"

    def timeline(self) -> TimelineFact:
        return self._fact(self.deal["created_at"], f"Deal opened: {self.deal['name']} ({_money(self.deal['amount'])})")


class DealStageChanged(_DealEvent):
    """A deal moved between open stages of its pipeline (also on reopening)."""

    type: ClassVar[str] = "deal_stage_changed"
    from_stage: str
    to_stage: str
    changed_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.changed_at, f"Deal {self.deal['name']}: {self.from_stage} → {self.to_stage}",
                          from_stage=self.from_stage, to_stage=self.to_stage)


class DealWon(_DealEvent):
    """A deal was won; ``order_id`` is the order it produced, if any."""

    type: ClassVar[str] = "deal_won"
    order_id: Id | None = None
    won_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.won_at, f"Deal won: {self.deal['name']} ({_money(self.deal['amount'])})",
                          order_id=self.order_id)


class DealLost(_DealEvent):
    """A deal was lost, with a reason from the list and an optional note."""

    type: ClassVar[str] = "deal_lost"
    reason: str
    note: str = ""
    lost_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.lost_at, f"Deal lost: {self.deal['name']} ({self.reason})", reason=self.reason)


class DealReopened(_DealEvent):
    """A won or lost deal was reopened into an open stage."""

    type: ClassVar[str] = "deal_reopened"
    from_status: str
    to_stage: str
    reopened_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.reopened_at, f"Deal reopened: {self.deal['name']}", from_status=self.from_status)


# -- activities ----------------------------------------------------------------------------

class _ActivityEvent(Event):
    subject_type: ClassVar[str] = "activity"
    activity_id: Id
    contact_id: Id | None = None
    activity: dict[str, Any]

    def subject(self) -> str:
        return self.activity_id


class ActivityDue(_ActivityEvent):
    """An open activity reached its due time: the reminder for its owner (published once
    per due time, whatever the number of replicas)."""

    type: ClassVar[str] = "activity_due"
    due_at: Timestamp


_ACTIVITY_CHANNEL = {"call": "phone", "meeting": "meeting"}


class ActivityCompleted(_ActivityEvent):
    """A task, call or meeting was done; calls and meetings about a known contact are
    logged on the contact's timeline."""

    type: ClassVar[str] = "activity_completed"
    completed_at: Timestamp

    def timeline(self) -> TimelineFact | None:
        kind = self.activity["kind"]
        if not self.contact_id or kind not in _ACTIVITY_CHANNEL:
            return None
        outcome = self.activity.get("outcome") or ""
        return self.fact(occurred_at=self.completed_at, channel=_ACTIVITY_CHANNEL[kind], direction="outbound",
                         summary=f"{kind.capitalize()}: {self.activity['subject']}" + (f" — {outcome}" if outcome else ""),
                         reference=Reference(type="activity", id=self.activity_id),
                         data={"owner": self.activity["owner"], "outcome": outcome})


# -- orders ----------------------------------------------------------------------------------

class _OrderEvent(Event):
    subject_type: ClassVar[str] = "order"
    order_id: Id
    contact_id: Id
    order: dict[str, Any]

    def subject(self) -> str:
        return self.order_id

    def _fact(self, at, summary: str, **data: Any) -> TimelineFact:
        return self.fact(occurred_at=at, summary=summary, channel=_ORDER_CHANNEL.get(self.order["channel"], "other"),
                         reference=Reference(type="order", id=self.order_id),
                         data={"external_ref": self.order["external_ref"], "total": self.order["total"],
                               "status": self.order["status"], **data})


_ORDER_CHANNEL = {"store": "store", "web": "web", "phone": "phone", "partner": "other"}


class OrderPlaced(_OrderEvent):
    """An order was placed (once per external reference)."""

    type: ClassVar[str] = "order_placed"

    def timeline(self) -> TimelineFact:
        return self._fact(self.order["placed_at"], f"Placed order {self.order['external_ref']} "
                                                   f"({_money(self.order['total'])})")


class OrderPaid(_OrderEvent):
    """An order was paid: the purchase counts from now on (loyalty earns points for it;
    the purchase summary includes it). ``total`` is what was paid."""

    type: ClassVar[str] = "order_paid"
    total: Money
    paid_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.paid_at, f"Paid order {self.order['external_ref']} ({_money(self.total)})")


class OrderStatusChanged(_OrderEvent):
    """An order was shipped, delivered or cancelled (the answer to "where is my order?")."""

    type: ClassVar[str] = "order_status_changed"
    from_status: str
    to_status: str
    changed_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.changed_at, f"Order {self.order['external_ref']} {self.to_status}",
                          from_status=self.from_status)


class OrderRefunded(_OrderEvent):
    """A paid order was refunded in full: ``total`` no longer counts (loyalty claws back
    the points it earned)."""

    type: ClassVar[str] = "order_refunded"
    total: Money
    reason: str
    refunded_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self._fact(self.refunded_at, f"Order {self.order['external_ref']} refunded ({_money(self.total)})",
                          reason=self.reason)


class PurchaseSummaryChanged(Event):
    """A contact's purchase summary moved (an order paid or refunded): what the 360° view,
    service levels and segments read about a customer's value. Totals are per currency,
    never summed across currencies."""

    type: ClassVar[str] = "purchase_summary_changed"
    contact_id: Id
    summary: dict[str, Any]          # as get_purchase_summary returns it
