"""The timeline contract: how any service puts a customer-facing fact on a contact's
timeline without contacts knowing the service.

A producer's event declares what a person should see (:meth:`crm_common.events.Event.timeline`
returns a :class:`TimelineFact`); the outbox publishes it, next to the event itself, as
an envelope of type ``timeline_fact`` on the ``crm.timeline`` exchange (routing key
``<source>.<kind>``). contacts consumes that stream (registry subscription "timeline")
and stores each fact as one entry, keyed by the envelope's event id. A new kind of fact
needs no change to contacts.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from .contracts import Id, Model, Text, Timestamp, Tolerant

TIMELINE_FACT = "timeline_fact"

CHANNELS = ("email", "phone", "sms", "chat", "meeting", "web", "social", "store", "other")
DIRECTIONS = ("inbound", "outbound", "internal")
SUMMARY_MAX = 2000

Channel = Literal["email", "phone", "sms", "chat", "meeting", "web", "social", "store", "other"]
Direction = Literal["inbound", "outbound", "internal"]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Reference(Model):
    """What the fact is about in its producer (a ledger entry, a deal, a ticket)."""

    type: Kind
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TimelineFact(Tolerant):
    """Read tolerantly (unknown fields ignored): producers may add fields before the
    consumer knows them."""

    contact_id: Id
    kind: Kind                                   # e.g. "points_earned", "deal_won", "ticket_opened"
    summary: Text(SUMMARY_MAX, required=True)    # one line a person reads
    occurred_at: Timestamp
    channel: Channel = "other"
    direction: Direction = "internal"
    reference: Reference | None = None
    data: dict[str, Any] = Field(default_factory=dict)   # kind-specific details, JSON


__all__ = ["TIMELINE_FACT", "CHANNELS", "DIRECTIONS", "SUMMARY_MAX", "Channel", "Direction", "Kind",
           "Reference", "TimelineFact"]
