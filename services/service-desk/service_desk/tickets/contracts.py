"""What the ticket RPCs accept (crm.v1.ServiceDeskService, proto/crm/v1/service_desk.proto):
one model per RPC, the request's fields by name."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from crm_common.contracts import Command, Id, OptId, OptText, Page, Paragraphs, Request, Text, error

SUBJECT_MAX = 200
DESCRIPTION_MAX = 20_000
BODY_MAX = 20_000
ORDER_REF_MAX = 100
COMMENT_MAX = 2000

Category = Literal["incorrect_repair", "late_delivery", "out_of_stock", "wrong_delivery", "poor_product_quality",
                   "billing", "question", "other"]
PriorityIn = Literal["low", "normal", "high", "urgent"]
Channel = Literal["email", "phone", "chat", "web_form", "social", "bot"]
Status = Literal["new", "open", "pending", "resolved", "closed"]


def _default(value: str):
    return lambda v: value if v == "" else v


def _none_if_empty(v):
    return None if v == "" else v


Priority = Annotated[PriorityIn, BeforeValidator(_default("normal"))]
OptPriority = Annotated[PriorityIn | None, BeforeValidator(_none_if_empty)]
OptStatus = Annotated[Status | None, BeforeValidator(_none_if_empty)]


class OpenTicket(Command):
    """A new ticket for a contact, from any channel (priority "" = normal)."""

    contact_id: Id
    subject: Text(SUBJECT_MAX, required=True)
    description: Paragraphs(DESCRIPTION_MAX)
    category: Category
    priority: Priority = "normal"
    channel: Channel
    order_ref: OptText(ORDER_REF_MAX) = None


class GetTicket(Request):
    ticket_id: Id


class ListTickets(Request, Page):
    """Newest first; every filter given must match; the caller's scope applies."""

    status: OptStatus = None
    group: OptId = None
    assignee: OptId = None
    contact_id: OptId = None
    priority: OptPriority = None


class ReplyToTicket(Command):
    """An agent's public reply (``internal`` false) or internal note (true)."""

    ticket_id: Id
    body: Paragraphs(BODY_MAX, required=True)
    internal: bool = False


class RecordCustomerReply(Command):
    """What the customer wrote (email, portal, chat), recorded on the ticket."""

    ticket_id: Id
    body: Paragraphs(BODY_MAX, required=True)


class ListMessages(Request, Page):
    ticket_id: Id


class ListCustomerMessages(Request, Page):
    ticket_id: Id


class ChangeTicketStatus(Command):
    """``pending_reason`` (customer or third_party) is required for pending, ignored otherwise."""

    ticket_id: Id
    status: Literal["open", "pending", "resolved", "closed"]
    pending_reason: Literal["", "customer", "third_party"] = Field("", validate_default=True)

    @field_validator("pending_reason")
    @classmethod
    def _reason(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("status") == "pending" and not value:
            raise error("pending_reason", "is required for pending (customer or third_party)")
        return value


class AssignTicket(Command):
    """``group`` "" keeps the ticket's group; ``assignee`` "" picks the group's next
    available agent (round-robin), or leaves it in the group's queue."""

    ticket_id: Id
    group: OptId = None
    assignee: OptId = None


class ChangeTicketPriority(Command):
    ticket_id: Id
    priority: PriorityIn


class RecordSatisfaction(Command):
    ticket_id: Id
    score: int = Field(ge=1, le=5)
    comment: Paragraphs(COMMENT_MAX) = ""
