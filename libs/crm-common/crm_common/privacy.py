"""A data subject's export (GDPR: right of access, data portability): what one service
holds about one contact, as stored.

Each service declares its personal records once, ``CrmService.PERSONAL_DATA``: a label ->
(collection, the field holding the contact id). The base class's ``export_contact`` RPC
(permission ``contacts.export``: admin) reads them with :func:`export`; the gateway's
``crm.v1.Privacy/ExportContactData`` asks every service and puts the answers together.
Records are exported as stored, not as views: the subject is owed everything held,
internal notes and read models included. Only the bookkeeping of the storage itself
(fields starting with ``_``: outboxes, staged writes) is left out. An erased contact's
export shows what erasure kept (anonymized records).
"""
from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any, Mapping

from pymongo.database import Database

from . import clock
from .contracts import Id, Request

#: Records per label at most: an export is one reply (the gateway's reply size limit applies).
MAX_RECORDS = 5_000


class ExportContact(Request):
    contact_id: Id


def export(db: Database, contact_id: str, declared: Mapping[str, tuple[str, str]]) -> dict[str, list[dict]]:
    """Every declared record of ``contact_id`` (an equality on an indexed field each, the
    id validated: never an operator), portable: JSON values, ``_id`` as ``id``."""
    return {label: [portable(doc) for doc in db[collection].find({field: contact_id}).limit(MAX_RECORDS)]
            for label, (collection, field) in declared.items()}


def portable(value: Any) -> Any:
    """``value`` as JSON: datetimes as ISO-8601 UTC, bytes as base64; in documents the
    storage's own fields (``_...``) dropped and ``_id`` named ``id``."""
    if isinstance(value, dict):
        return {("id" if key == "_id" else key): portable(item) for key, item in value.items()
                if key == "_id" or not str(key).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if isinstance(value, datetime):
        return clock.to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)   # ObjectId, Decimal128, ...
