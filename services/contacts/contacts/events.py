"""Events of the contacts service.

Published on ``contacts.events`` (nameko source service ``contacts``), always after the
state change is stored (staged in the same single-document write, see
crm_common.events). Envelope: ``event_id, type, occurred_at, source="contacts",
subject=<contact_id>, data, correlation_id``. ``<contact>`` below is the contact exactly
as on the wire in docs/rpc.md (``id, version, created_at, updated_at, given_name, ...,
consents, erased``).

Consumed from ``loyalty.events`` (each becomes one timeline entry whose id is derived
from the ``event_id``, so a redelivery adds nothing): ``member_enrolled``,
``points_earned``, ``points_redeemed``, ``points_expired``, ``tier_changed``.
"""

SOURCE = "contacts"

CONTACT_CREATED = "contact_created"
"""A contact was created. data = ``{"contact": <contact>}``"""

CONTACT_UPDATED = "contact_updated"
"""Fields of a contact changed (update_contact, link_contact_to_company).
data = ``{"contact": <contact after the change>, "changed": [top-level field names]}``.
Consents never appear here: they have their own event."""

CONSENT_CHANGED = "consent_changed"
"""One consent channel flipped (published only when ``granted`` actually changes).
data = ``{"contact_id", "channel": "email"|"sms"|"phone"|"loyalty", "granted": bool,
"source": str, "at": ISO-8601, "display_name": str}``"""

CONTACT_ERASED = "contact_erased"
"""A contact's personal data was erased (GDPR). Every service anonymizes what it keeps
about the contact. data = ``{"contact_id"}``. Published once, on the first erase."""

PUBLISHED = (CONTACT_CREATED, CONTACT_UPDATED, CONSENT_CHANGED, CONTACT_ERASED)

LOYALTY = "loyalty"
LOYALTY_EVENTS = ("member_enrolled", "points_earned", "points_redeemed", "points_expired", "tier_changed")
