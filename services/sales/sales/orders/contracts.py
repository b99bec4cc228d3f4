"""What the order RPCs accept (crm.v1.SalesService). Rules across fields (every line in
the order's currency, totals that fit) are the domain's (orders/domain.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from crm_common.contracts import Command, Id, OptText, Page, Request, Text, Tolerant, error
from crm_common.money import Currency, Money

from ..common import Sku

CHANNELS = ("store", "web", "phone", "partner")
STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "refunded")
MAX_LINES = 500
MAX_QUANTITY = 1_000_000


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


def _not_negative(money: Money) -> Money:
    if money.amount_minor < 0:
        raise error("unit_price", "amount_minor must not be negative")
    return money


class OrderLineIn(Tolerant):
    sku: Sku
    name: Text(200, required=True)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    unit_price: Annotated[Money, AfterValidator(_not_negative)]


class PlaceOrder(Command):
    """Once per ``external_ref`` (the shop's or till's order number): placing the same
    reference again returns the order it made."""

    contact_id: Id
    external_ref: Text(200, required=True)
    channel: Literal["store", "web", "phone", "partner"]
    currency: Currency
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]
    deal_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None


class GetOrder(Request):
    order_id: Id


class ListOrders(Request, Page):
    """A contact's orders (or every order), newest first."""

    contact_id: Annotated[Id | None, BeforeValidator(_none_if_empty)] = None
    status: Annotated[Literal["placed", "paid", "shipped", "delivered", "cancelled", "refunded"] | None,
                      BeforeValidator(_none_if_empty)] = None


class PayOrder(Command):
    order_id: Id
    payment_ref: OptText(200) = None


class ShipOrder(Command):
    order_id: Id
    carrier: OptText(100) = None
    tracking_ref: OptText(200) = None


class DeliverOrder(Command):
    order_id: Id


class CancelOrder(Command):
    """Only an order not paid yet; a paid one is refunded."""

    order_id: Id
    reason: Text(500, required=True)


class RefundOrder(Command):
    """In full, a paid (shipped, delivered) order."""

    order_id: Id
    reason: Text(500, required=True)


class GetPurchaseSummary(Request):
    contact_id: Id


class ListPurchaseSummaries(Request, Page):
    """Internal: every contact's purchase summary by contact id (a service rebuilding its
    read model of sales pages through them)."""
