"""Entrypoints of orders and purchase summaries."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from crm_common import audit, clock, contracts, paging
from crm_common.errors import AlreadyExists, InvalidArgument
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import rpc
from crm_common.retry import on_conflict

from ..events import OrderPaid, OrderPlaced, OrderRefunded, OrderStatusChanged, PurchaseSummaryChanged
from . import contracts as C
from . import domain, summary
from .views import order_view, summary_view

ORDER_CHANGES = Counter("crm_sales_orders_total", "Orders placed and moved, by the status they reached", ["status"])
REVENUE = Counter("crm_sales_revenue_minor_total",
                  "Money of paid and of refunded orders, in minor units per currency (net = paid - refunded)",
                  ["currency", "kind"])
for _status in ("placed", *domain.STAMP):
    ORDER_CHANGES.labels(_status)   # at zero from the start: increase() sees the first one
AUDITED = ("status", "payment_ref", "carrier", "tracking_ref")


class OrderEntrypoints:
    """Mixed into SalesService (service.py): ``self.store.orders`` is the OrderStore."""

    @rpc(C.PlaceOrder)
    def place_order(self, req: C.PlaceOrder):
        existing = self.store.orders.by_ref(req.external_ref)
        if existing is not None:
            return self._same_order(existing, req.contact_id)
        self._require_contact(req.contact_id)
        if req.deal_id:
            deal = self.store.deals.get(req.deal_id, self._scope(), field="deal_id")
            if deal["contact_id"] != req.contact_id:
                raise InvalidArgument.field("deal_id", f"deal {req.deal_id} is about contact {deal['contact_id']}, "
                                                       f"not {req.contact_id}")
        now = clock.now()
        doc = domain.new_order(new_id("ord"), contracts.dump(req), now, self._by())
        view = order_view(doc)
        staged = self.outbox.announce(OrderPlaced(order_id=doc["_id"], contact_id=doc["contact_id"], order=view),
                                      event_id=derived_id("evt", doc["_id"], "placed"))
        staged += self.outbox.audit("order", doc["_id"], "place", {}, view, contact_id=doc["contact_id"])
        if self.store.orders.insert(doc, staged) is None:   # placed concurrently, or a replay
            return self._same_order(self.store.orders.by_ref(req.external_ref), req.contact_id)
        self.outbox.publish(self.store.orders.orders, doc["_id"], staged)
        ORDER_CHANGES.labels("placed").inc()
        return view

    def _same_order(self, order: dict[str, Any], contact_id: str) -> dict[str, Any]:
        if order["contact_id"] != contact_id:
            raise AlreadyExists(f"external_ref {order['external_ref']} is order {order['_id']} of another contact",
                                {"existing_id": order["_id"], "field": "external_ref"})
        return order_view(order)

    @rpc(C.GetOrder)
    def get_order(self, req: C.GetOrder):
        return order_view(self.store.orders.get(req.order_id))

    @rpc(C.ListOrders)
    def list_orders(self, req: C.ListOrders):
        cursor = paging.decode(req.page_token, id=str)
        docs = self.store.orders.page(req.contact_id, req.status, cursor and cursor["id"], req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"orders": [order_view(d) for d in page], "next_page_token": token}

    @rpc(C.PayOrder)
    def pay_order(self, req: C.PayOrder):
        return self._advance(req.order_id, "paid", None, payment_ref=req.payment_ref)

    @rpc(C.ShipOrder)
    def ship_order(self, req: C.ShipOrder):
        return self._advance(req.order_id, "shipped", None, carrier=req.carrier, tracking_ref=req.tracking_ref)

    @rpc(C.DeliverOrder)
    def deliver_order(self, req: C.DeliverOrder):
        return self._advance(req.order_id, "delivered", None)

    @rpc(C.CancelOrder)
    def cancel_order(self, req: C.CancelOrder):
        return self._advance(req.order_id, "cancelled", req.reason)

    @rpc(C.RefundOrder)
    def refund_order(self, req: C.RefundOrder):
        return self._advance(req.order_id, "refunded", req.reason)

    @on_conflict()
    def _advance(self, order_id: str, status: str, note: str | None, **fields: Any) -> dict[str, Any]:
        """Move the order to ``status`` in one guarded write with its event and audit entry
        (nothing when it is there or past it already: a retry)."""
        order = self.store.orders.get(order_id)
        now = clock.now()
        sets = domain.transition(order, status, now, self._by(), note, **fields)
        if not sets:
            return order_view(order)
        view = order_view({**order, **sets, "updated_at": now, "version": order["version"] + 1})
        common = {"order_id": order_id, "contact_id": order["contact_id"], "order": view}
        if status == "paid":
            event = OrderPaid(**common, total=order["total"], paid_at=now)
        elif status == "refunded":
            event = OrderRefunded(**common, total=order["total"], reason=note or "", refunded_at=now)
        else:
            event = OrderStatusChanged(**common, from_status=order["status"], to_status=status, changed_at=now)
        staged = self.outbox.announce(event, event_id=derived_id("evt", order_id, status))
        staged += self.outbox.audit("order", order_id, status, *audit.changed(order_view(order), view, AUDITED),
                                    contact_id=order["contact_id"])
        self.store.orders.update(order, sets, staged, now)
        self.outbox.publish(self.store.orders.orders, order_id, staged)
        ORDER_CHANGES.labels(status).inc()
        if status in ("paid", "refunded"):
            REVENUE.labels(order["total"]["currency"], status).inc(order["total"]["amount_minor"])
        return view

    def _require_order_of(self, order_id: str, contact_id: str, field: str) -> None:
        order = self.store.orders.get(order_id, field)
        if order["contact_id"] != contact_id:
            raise InvalidArgument.field(field, f"order {order_id} is for contact {order['contact_id']}, "
                                               f"not {contact_id}")

    # -- purchase summaries --------------------------------------------------------------
    @rpc(C.GetPurchaseSummary)
    def get_purchase_summary(self, req: C.GetPurchaseSummary):
        return summary_view(self.store.orders.summary(req.contact_id))

    @rpc(C.ListPurchaseSummaries)
    def list_purchase_summaries(self, req: C.ListPurchaseSummaries):
        page, token = paging.by_id(req.page_token, req.size, self.store.orders.page_summaries)
        return {"summaries": [summary_view(d) for d in page], "next_page_token": token}

    @on_conflict(attempts=10)
    def _apply_to_summary(self, order: dict[str, Any], fact: str, at) -> None:
        """Count a paid order in (or a refunded one out of) the contact's summary, once,
        with ``purchase_summary_changed`` staged in the same write."""
        contact_id = order["contact_id"]
        before = self.store.orders.summary(contact_id)
        after = summary.apply(before, order, fact, at)
        if after is None:
            return
        event = PurchaseSummaryChanged(contact_id=contact_id, summary=summary_view(after))
        staged = self.outbox.announce(event, event_id=derived_id("evt", "summary", contact_id, order["id"], fact))
        self.store.orders.save_summary(before, after, staged)
        self.outbox.publish(self.store.orders.summaries, contact_id, staged)
