"""Events of the contacts service, published on ``contacts.events`` always after the
state change is stored (staged in the same single-document write, crm_common.events).
``contact`` in a payload is the contact exactly as ``get_contact`` returns it
(docs/rpc.md). Consumed: every service's timeline facts (the "timeline" subscription),
stored as timeline entries; marketing's contact_unsubscribed (the channel's consent is
withdrawn).
"""
from __future__ import annotations

from typing import Any, ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import TimelineFact

from .contracts import ConsentChannel


class ContactCreated(Event):
    """A contact was created."""

    type: ClassVar[str] = "contact_created"
    contact: dict[str, Any]

    def subject(self) -> str:
        return self.contact["id"]


class ContactUpdated(Event):
    """Fields of a contact changed (update_contact, link_contact_to_company). Consents
    never appear here: they have their own event. ``changed`` lists the top-level field
    names."""

    type: ClassVar[str] = "contact_updated"
    contact: dict[str, Any]
    changed: list[str]

    def subject(self) -> str:
        return self.contact["id"]


class ConsentChanged(Event):
    """One consent channel flipped (published only when ``granted`` actually changes)."""

    type: ClassVar[str] = "consent_changed"
    contact_id: Id
    channel: ConsentChannel
    granted: bool
    source: str
    at: Timestamp
    display_name: str | None = None

    def timeline(self) -> TimelineFact:
        verb = "gave" if self.granted else "withdrew"
        return self.fact(occurred_at=self.at, summary=f"{verb.capitalize()} consent to {self.channel} ({self.source})",
                         data={"channel": self.channel, "granted": self.granted, "source": self.source})


class ContactErased(Event):
    """A contact's personal data was erased (GDPR). Every service anonymizes what it keeps
    about the contact. Published once, on the first erase."""

    type: ClassVar[str] = "contact_erased"
    contact_id: Id
