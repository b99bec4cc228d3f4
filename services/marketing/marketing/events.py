"""Events of the marketing service, published on ``marketing.events``."""
from __future__ import annotations

from typing import ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import Reference, TimelineFact


class NoteCreated(Event):
    """A note about a contact was recorded."""

    type: ClassVar[str] = "note_created"
    contact_id: Id
    note_id: str
    text: str
    created_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self.fact(occurred_at=self.created_at, summary=self.text[:200],
                         reference=Reference(type="note", id=self.note_id))
