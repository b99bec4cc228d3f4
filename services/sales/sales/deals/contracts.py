"""What the pipeline, deal and forecast RPCs accept (crm.v1.SalesService)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from crm_common.contracts import Command, Id, OptText, Page, Request, Text, Tolerant, error
from crm_common.money import Money

from ..common import OptDay, OptMonth, OptOwner, OptSlug, Sku, Slug

LOST_REASONS = ("price", "competitor", "no_budget", "no_decision", "timing", "product_fit", "went_silent", "other")
DEAL_STATUSES = ("open", "won", "lost")
MAX_STAGES = 30
MAX_PRODUCTS = 100

LostReason = Literal["price", "competitor", "no_budget", "no_decision", "timing", "product_fit", "went_silent",
                     "other"]
DealStatus = Literal["open", "won", "lost"]

#: UpdateDeal's update_mask may name these (the stage moves with MoveDeal, the status with Win/Lose/Reopen).
UPDATABLE_FIELDS = ("name", "amount", "expected_close_date", "products", "company_id", "owner")


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


def _not_negative(money: Money) -> Money:
    if money.amount_minor < 0:
        raise error("amount", "amount_minor must not be negative")
    return money


Amount = Annotated[Money, AfterValidator(_not_negative)]
OptId = Annotated[Id | None, BeforeValidator(_none_if_empty)]


class StageIn(Tolerant):
    id: Slug
    name: Text(100, required=True)
    probability: int = Field(ge=0, le=100)


class CreatePipeline(Command):
    """A pipeline's open stages in order, each with its win probability in percent (won
    and lost are not stages: every deal ends in one of them)."""

    name: Text(100, required=True)
    stages: Annotated[list[StageIn], Field(min_length=1, max_length=MAX_STAGES)]

    @field_validator("stages")
    @classmethod
    def _distinct(cls, stages: list[StageIn]) -> list[StageIn]:
        if len({s.id for s in stages}) != len(stages):
            raise error("stages", "stage ids must be distinct")
        if {"won", "lost"} & {s.id for s in stages}:
            raise error("stages", "won and lost are outcomes, not stages")
        return stages


class GetPipeline(Request):
    pipeline_id: Id


class ListPipelines(Request):
    pass


class ProductLine(Tolerant):
    sku: Sku
    name: OptText(200) = None
    quantity: int = Field(1, ge=1, le=1_000_000)


class DealIn(Tolerant):
    """The writable fields of a deal (output-only fields of crm.v1.Deal are ignored).
    Empty pipeline: the default one; empty stage: its first."""

    name: Text(200, required=True)
    contact_id: Id
    company_id: OptId = None
    amount: Amount
    expected_close_date: OptDay = None
    products: Annotated[list[ProductLine], Field(max_length=MAX_PRODUCTS)] = []
    owner: OptOwner = None
    pipeline_id: OptId = None
    stage_id: OptSlug = None


class DealChanges(Tolerant):
    """What UpdateDeal may change (the fields its update_mask names)."""

    name: OptText(200) = None
    company_id: OptId = None
    amount: Amount | None = None
    expected_close_date: OptDay = None
    products: Annotated[list[ProductLine], Field(max_length=MAX_PRODUCTS)] = []
    owner: OptOwner = None


class CreateDeal(Command):
    deal: DealIn


class GetDeal(Request):
    deal_id: Id


class ListDeals(Request, Page):
    status: Annotated[DealStatus | None, BeforeValidator(_none_if_empty)] = None
    owner: OptOwner = None
    pipeline_id: OptId = None
    stage_id: OptSlug = None
    contact_id: OptId = None


class UpdateDeal(Command):
    deal_id: Id
    deal: dict[str, Any]
    update_mask: Annotated[list[Literal["name", "amount", "expected_close_date", "products", "company_id", "owner"]],
                           Field(min_length=1, max_length=len(UPDATABLE_FIELDS))]
    expected_version: int = Field(ge=1)


class MoveDeal(Command):
    """Moves an open deal to another stage of its pipeline; ``expected_version`` 0: any."""

    deal_id: Id
    stage_id: Slug
    expected_version: int = Field(0, ge=0)


class WinDeal(Command):
    deal_id: Id
    order_id: OptId = None
    note: OptText(1000) = None


class LoseDeal(Command):
    deal_id: Id
    reason: LostReason
    note: OptText(1000) = None


class ReopenDeal(Command):
    """Back to an open stage: ``stage_id``, or the stage it was in when it closed."""

    deal_id: Id
    stage_id: OptSlug = None


class GetForecast(Request):
    """Weighted pipeline of open deals (amount × the stage's probability) by expected-close
    month and by owner, per currency; ``months`` from ``from_month`` (default: this month)."""

    pipeline_id: OptId = None
    owner: OptOwner = None
    from_month: OptMonth = None
    months: int = Field(6, ge=0, le=36)


class GetSalesReport(Request):
    """Win rate, average deal size, sales cycle and stage conversion of deals created
    between ``from_date`` and ``to_date`` (inclusive; default the last 365 days)."""

    pipeline_id: OptId = None
    owner: OptOwner = None
    from_date: OptDay = None
    to_date: OptDay = None
