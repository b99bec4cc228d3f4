"""What the engagement RPCs accept (crm.v1.MarketingService: TrackEngagement,
RecordDeliveryReport)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crm_common.contracts import Command, Id, Request, Text

from .tokens import MAX_TOKEN


class TrackEngagement(Request):
    """An open, a click or an unsubscribe, by the token of the link that was followed."""

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN)]


class RecordDeliveryReport(Command):
    """What a mail or SMS provider reports after the fact: a bounce, a complaint (treated as
    an unsubscribe), a reply."""

    message_id: Id
    kind: Literal["bounce", "complaint", "reply"]
    detail: Text(500) = ""
