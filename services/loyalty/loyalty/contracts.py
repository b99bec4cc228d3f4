"""What the loyalty service's RPCs accept: one model per RPC (crm.v1.LoyaltyService in
proto/crm/v1/loyalty.proto is the same contract seen from outside)."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from crm_common.contracts import IDEMPOTENCY_KEY_MAX, Command, Id, Page, Request, Text, error
from crm_common.money import Money

SOURCE_MAX = 64
SOURCE_REF_MAX = 200
REASON_MAX = 200


def _positive_amount(money: Money) -> Money:
    if money.amount_minor <= 0:
        raise error("amount", "amount_minor must be greater than zero")
    return money


def _empty_to_none(value):
    return None if value == "" else value


class Enroll(Command):
    contact_id: Id


class GetMember(Request):
    contact_id: Id


class EarnPoints(Command):
    """Earns once per (source, source_ref), whoever asks and however often."""

    contact_id: Id
    source: Text(SOURCE_MAX, required=True)
    source_ref: Text(SOURCE_REF_MAX, required=True)
    amount: Annotated[Money, AfterValidator(_positive_amount)]


class RedeemPoints(Request):
    """``idempotency_key`` is the redemption's own: the ledger entry's id derives from it,
    so a retry returns the original entry for as long as the ledger keeps it."""

    contact_id: Id
    points: int = Field(ge=1)
    reason: Text(REASON_MAX, required=True)
    idempotency_key: Annotated[Text(IDEMPOTENCY_KEY_MAX) | None, BeforeValidator(_empty_to_none)] = None


class ListLedger(Request, Page):
    contact_id: Id


class ListMembers(Request, Page):
    """Internal: every member, by contact id (a service rebuilding its read model of
    loyalty pages through them)."""
