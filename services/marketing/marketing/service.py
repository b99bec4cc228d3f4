"""The marketing nameko service: entrypoints only (contracts.py says what each accepts)."""
from __future__ import annotations

from crm_common import clock
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.mongo import MongoStore

from . import contracts as C
from . import domain
from .events import NoteCreated
from .store import NOTES, MarketingStore
from .views import note_view


class MarketingService(CrmService):
    name = "marketing"
    OUTBOX_COLLECTIONS = (NOTES,)
    store = MongoStore(MarketingStore)

    @rpc(C.CreateNote)
    def create_note(self, req: C.CreateNote):
        doc = domain.new_note(req, clock.now())
        staged = self.outbox.announce(NoteCreated(contact_id=doc["contact_id"], note_id=doc["_id"],
                                                  text=doc["text"], created_at=doc["created_at"]))
        # who did it, with the after: written to this service's audit trail with the note
        staged += self.outbox.audit("note", doc["_id"], "create", {}, note_view(doc), contact_id=doc["contact_id"])
        if self.store.insert_note(doc, staged):
            self.outbox.publish(self.store.notes, doc["_id"], staged)
        return note_view(self.store.get_note(doc["_id"]))

    @rpc(C.GetNote)
    def get_note(self, req: C.GetNote):
        return note_view(self.store.get_note(req.note_id))
