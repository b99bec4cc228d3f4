"""The contacts sales knows: a read model built from contacts' events (never their
database), so that a reference to a contact is checked without a call, a lead is linked
to the contact with its email or phone, and an erasure reaches what sales keeps.

* ``known_contacts``: ``{_id: contact_id, display_name, keys, contact_version, erased}``
  (``keys`` = ``email:<address>`` / ``phone:<+digits>``, normalized as contacts does).
* ``contact_points``: ``{_id: key, contact_id}``, one per key of a live contact.

Events arrive out of order across queues and more than once: a contact's document keeps
the newest version it heard of, and an erasure (a tombstone, ``erased: true``) wins over
anything that arrives after it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database

from crm_common import updates
from crm_common.errors import FailedPrecondition, NotFound
from crm_common.nameko.remote import call

KNOWN = "known_contacts"
POINTS = "contact_points"


def contact_keys(contact: dict[str, Any]) -> list[str]:
    """The keys of a contact as contacts' events show it (already normalized there)."""
    keys = [f"email:{e['address']}" for e in contact.get("emails") or [] if e.get("address")]
    keys += [f"phone:{p['number']}" for p in contact.get("phones") or [] if p.get("number")]
    return sorted(set(keys))


class KnownContacts:
    def __init__(self, db: Database):
        self.known = db[KNOWN]
        self.points = db[POINTS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[POINTS].create_index("contact_id")

    def state(self, contact_id: str) -> str | None:
        """"live", "erased", or None (not heard of)."""
        doc = self.known.find_one({"_id": contact_id}, {"erased": 1})
        if doc is None:
            return None
        return "erased" if doc.get("erased") else "live"

    def contact_with(self, keys: list[str]) -> str | None:
        """The live contact holding one of ``keys`` (the first key that has one)."""
        for key in keys:
            doc = self.points.find_one({"_id": key})
            if doc is not None:
                return doc["contact_id"]
        return None

    def save(self, contact: dict[str, Any], now: datetime) -> None:
        """Keep the contact as of its newest version (an older event changes nothing): one
        guarded upsert (crm_common.updates.upsert_unless), then its contact points."""
        contact_id, version = contact["id"], int(contact.get("version") or 0)
        keys = [] if contact.get("erased") else contact_keys(contact)
        fields = {"display_name": contact.get("display_name"), "keys": keys, "contact_version": version,
                  "erased": bool(contact.get("erased")), "updated_at": now}
        before = updates.upsert_unless(self.known, contact_id,
                                       {"erased": {"$ne": True}, **updates.older_than("contact_version", version)},
                                       {"$set": fields})
        if before is not None:
            self._sync_points(contact_id, before.get("keys") or [], keys)

    def _sync_points(self, contact_id: str, old: list[str], new: list[str]) -> None:
        for key in set(old) - set(new):
            self.points.delete_one({"_id": key, "contact_id": contact_id})
        for key in set(new) - set(old):
            self.points.replace_one({"_id": key}, {"_id": key, "contact_id": contact_id}, upsert=True)

    def erase(self, contact_id: str, now: datetime) -> None:
        """The tombstone: what the contact was called and how to reach them is gone."""
        self.known.update_one({"_id": contact_id},
                              {"$set": {"display_name": None, "keys": [], "erased": True, "updated_at": now}},
                              upsert=True)
        self.points.delete_many({"contact_id": contact_id})


class ContactReferences:
    """Mixed into SalesService: checking a contact a request names. The read model
    answers first; a contact it has not heard of yet (its event is a few milliseconds
    behind the create) is asked of contacts itself, with the caller's rights."""

    def _require_contact(self, contact_id: str, field: str = "contact_id") -> None:
        state = self.store.contacts.state(contact_id)
        if state is None:
            try:
                contact = call(self.contacts_rpc, "get_contact", contact_id=contact_id)
            except NotFound:
                raise NotFound(f"{field}: no contact {contact_id}", {"field": field, "contact_id": contact_id}) from None
            state = "erased" if contact.get("erased") else "live"   # its event will fill the read model
        if state == "erased":
            raise FailedPrecondition(f"{field}: contact {contact_id} was erased",
                                     {"field": field, "contact_id": contact_id})
