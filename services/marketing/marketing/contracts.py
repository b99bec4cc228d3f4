"""What the marketing service's RPCs accept: one model per RPC, the same fields as the
crm.v1.MarketingService request messages (proto/crm/v1/marketing.proto)."""
from __future__ import annotations

from crm_common.contracts import Command, Id, Request, Text

TEXT_MAX = 2000


class CreateNote(Command):
    contact_id: Id
    text: Text(TEXT_MAX, required=True)


class GetNote(Request):
    note_id: Id
