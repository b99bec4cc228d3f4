"""What the campaign RPCs accept (crm.v1.MarketingService: CreateCampaign ...
ListCampaignMessages). Templates are checked here (a syntax error is INVALID_ARGUMENT
naming the field and the line), money is integer minor units with a currency, and a
budget needs a cost per message in the same currency."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from crm_common.contracts import Command, Id, Model, OptTimestamp, Page, Paragraphs, Request, Text, Tolerant, error
from crm_common.errors import InvalidArgument
from crm_common.money import Money

from . import domain as D
from . import templates

NAME_MAX = 150
SUBJECT_MAX = 300
TEXT_BODY_MAX = 100_000
HTML_BODY_MAX = 200_000
SMS_MAX = 1_600
MAX_SEGMENTS = 20
MAX_DEFAULTS = 30
_VARIABLE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CHANNELS = ("email", "sms")
UPDATABLE = ("name", "email", "sms", "defaults", "include_segment_ids", "exclude_segment_ids", "schedule_at",
             "budget", "cost_per_message")


def _variable(key: str) -> str:
    if not _VARIABLE.match(key):
        raise error("variable", "names a template variable: ^[a-z][a-z0-9_]{0,39}$")
    return key


def _empty_to_none(value):
    return None if value in ("", {}) else value


class EmailContent(Tolerant):
    subject: Text(SUBJECT_MAX, required=True)               # one line: no header can be smuggled in
    body_text: Paragraphs(TEXT_BODY_MAX, required=True)
    body_html: Paragraphs(HTML_BODY_MAX) = ""

    @model_validator(mode="after")
    def _templates(self):
        templates.check(self.subject, "email.subject")
        templates.check(self.body_text, "email.body_text")
        if self.body_html:
            templates.check(self.body_html, "email.body_html", is_html=True)
        return self


class SmsContent(Tolerant):
    text: Paragraphs(SMS_MAX, required=True)

    @model_validator(mode="after")
    def _template(self):
        templates.check(self.text, "sms.text")
        return self


SegmentIds = Annotated[list[Id], Field(max_length=MAX_SEGMENTS), AfterValidator(lambda v: list(dict.fromkeys(v)))]
Defaults = Annotated[dict[Annotated[str, AfterValidator(_variable)], Text(200)], Field(max_length=MAX_DEFAULTS)]


def _not_negative(money: Money | None) -> Money | None:
    if money is not None and money.amount_minor < 0:
        raise error("amount", "amount_minor must not be negative")
    return money


OptMoney = Annotated[Money | None, BeforeValidator(_empty_to_none), AfterValidator(_not_negative)]


class CampaignIn(Model):
    """A campaign's definition, as CreateCampaign takes it and UpdateCampaign replaces its parts."""

    name: Text(NAME_MAX, required=True)
    channel: Literal[CHANNELS]
    email: Annotated[EmailContent | None, BeforeValidator(_empty_to_none)] = None
    sms: Annotated[SmsContent | None, BeforeValidator(_empty_to_none)] = None
    defaults: Defaults = {}
    include_segment_ids: Annotated[SegmentIds, Field(min_length=1)]
    exclude_segment_ids: SegmentIds = []
    schedule_at: OptTimestamp = None
    budget: OptMoney = None
    cost_per_message: OptMoney = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.channel == "email" and self.email is None:
            raise InvalidArgument.field("email", "an email campaign needs email content (subject, body_text)")
        if self.channel == "sms" and self.sms is None:
            raise InvalidArgument.field("sms", "an SMS campaign needs sms content (text)")
        if self.channel == "email" and self.sms is not None or self.channel == "sms" and self.email is not None:
            raise InvalidArgument.field("channel", f"a {self.channel} campaign carries {self.channel} content only")
        if set(self.include_segment_ids) & set(self.exclude_segment_ids):
            raise InvalidArgument.field("exclude_segment_ids", "a segment cannot be both included and excluded")
        if self.budget is not None:
            if self.cost_per_message is None or self.cost_per_message.amount_minor <= 0:
                raise InvalidArgument.field("cost_per_message", "a budget needs a cost per message above zero")
            if self.cost_per_message.currency != self.budget.currency:
                raise InvalidArgument.field("cost_per_message", f"must be in the budget's currency {self.budget.currency}")
        return self

    def content(self) -> dict[str, Any]:
        return (self.email or self.sms).model_dump()


class CreateCampaign(CampaignIn, Command):
    pass


class UpdateCampaign(Command):
    """Replaces the fields named in ``update_mask`` of a draft (or scheduled) campaign still
    at ``expected_version``."""

    campaign_id: Id
    expected_version: int = Field(ge=1)
    campaign: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = {}
    update_mask: Annotated[list[Literal[UPDATABLE]], Field(min_length=1)]


class GetCampaign(Request):
    campaign_id: Id


class ListCampaigns(Request, Page):
    pass


class DryRunCampaign(Request, Page):
    """Who would receive the campaign now and who would not, and why; ``decision`` lists
    only those answers (send, defer, skip)."""

    campaign_id: Id
    decision: Annotated[Literal["send", "defer", "skip"] | None, BeforeValidator(_empty_to_none)] = None


class SendCampaign(Command):
    campaign_id: Id


class CancelCampaign(Command):
    campaign_id: Id


class GetCampaignProgress(Request):
    campaign_id: Id


class ListCampaignMessages(Request, Page):
    campaign_id: Id
    status: Annotated[Literal[(D.QUEUED, D.DEFERRED, D.SENDING, *D.FINAL)] | None,
                      BeforeValidator(_empty_to_none)] = None


