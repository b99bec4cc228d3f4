"""Points for sales' orders: what loyalty reads of ``order_paid`` and ``order_refunded``
(declared by their producer, sales/events.py) and the member changes they make.

The rule (domain.py applies it): a paid order of an active member earns points by the
earning rule, once (source "order", source_ref the order id); a contact who is not an
active member then earns nothing for it, and that is not a failure. A refund takes back
what the order earned (less what of it expired unspent), never below a zero balance:
the rest is owed and paid from later earnings first. The two events travel on separate
queues and may be handled in either order; a refund handled first still leaves the
order with no points (store.py, "Refunds that may come before their payment").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm_common import clock
from crm_common.contracts import Id, Tolerant, parse
from crm_common.money import Money

from . import domain

ORDER = "order"          # the source of an order's points; the source_ref is the order id
LABEL_MAX = 200          # of the words an entry keeps from the order (its reason)


class _OrderEvent(Tolerant):
    """The ids loyalty acts on, as strictly as an RPC argument; the rest of the payload is
    read tolerantly (unknown fields ignored, odd shapes of the order view shrugged off)."""

    order_id: Id
    contact_id: Id
    order: Any = None
    reason: Any = None


class _OrderPaid(_OrderEvent):
    total: Money


@dataclass(frozen=True)
class Order:
    """An order as loyalty uses it: ids, what was paid (refunds: None), and the words its
    ledger entries and timeline facts use ("order WEB-1001 refunded: damaged")."""

    order_id: str
    contact_id: str
    label: str
    total: Money | None = None
    refund_reason: str | None = None


def paid(data: Any) -> Order:
    """The order of an ``order_paid`` payload (InvalidArgument naming the field if its ids
    or total are malformed: the delivery is retried, then parked)."""
    event = parse(_OrderPaid, data, prefix="data")
    return Order(event.order_id, event.contact_id, _label(event), event.total)


def refunded(data: Any) -> Order:
    """The order of an ``order_refunded`` payload (its total is not needed: what is taken
    back is what the order earned here)."""
    event = parse(_OrderEvent, data, prefix="data")
    label = f"{_label(event)} refunded"
    if isinstance(event.reason, str) and event.reason.strip():
        label = f"{label}: {event.reason.strip()}"[:LABEL_MAX]
    return Order(event.order_id, event.contact_id, _label(event), refund_reason=label)


def _label(event: _OrderEvent) -> str:
    ref = event.order.get("external_ref") if isinstance(event.order, dict) else None
    ref = ref.strip() if isinstance(ref, str) and ref.strip() else event.order_id
    return f"order {ref}"[:LABEL_MAX]


def earn(order: Order, policy: domain.Policy):
    """The op (writes.MemberWrites.apply) earning an order's points for an active member;
    anyone else (no member, opted out, erased) and a total of nothing earn nothing."""
    def op(member):
        if member is None or member.erased or member.state.status != domain.ACTIVE or order.total.amount_minor <= 0:
            return None
        return domain.earn(member.state, order.contact_id, clock.now(), policy, source=ORDER,
                           source_ref=order.order_id, amount=order.total, reason=order.label)
    return op


def reverse(order_id: str, contact_id: str, reason: str, policy: domain.Policy):
    """The op taking back what an order earned for the member, if it earned anything
    (whatever the member's status: a refund is a refund)."""
    def op(member):
        if member is None:
            return None
        return domain.reverse(member.state, contact_id, clock.now(), policy, source=ORDER, source_ref=order_id,
                              reason=reason)
    return op
