"""Events of the loyalty service.

Published on ``loyalty.events`` in the crm_common envelope (``event_id, type, occurred_at,
source="loyalty", subject=<contact_id>, data, correlation_id``). Event ids are derived
from what they announce (a ledger entry, an enrolment, a member version), so a relayed
duplicate carries the same ``event_id`` and consumers drop it.

A *ledger entry* on the wire (docs/rpc.md): ``{"id": "led_...", "contact_id", "kind":
"earn"|"redeem"|"expire", "points": int (negative for redeem/expire), "balance_after",
"source", "source_ref", "reason", "amount": {"amount_minor", "currency"} | null,
"occurred_at"}``.
"""
from __future__ import annotations

SOURCE = "loyalty"

MEMBER_ENROLLED = "member_enrolled"
"""A contact became a loyalty member (explicit ``enroll`` or consent announced by contacts).
data: ``{"contact_id": str, "member_id": "mem_...", "tier": "bronze", "enrolled_at": iso}``"""

POINTS_EARNED = "points_earned"
"""A purchase earned points (once per ``(source, source_ref)``).
data: ``{"contact_id": str, "entry": <ledger entry, kind "earn">, "balance": int}``
(``balance`` = the member's balance right after this entry)."""

POINTS_REDEEMED = "points_redeemed"
"""Points were spent. data: ``{"contact_id", "entry": <ledger entry, kind "redeem",
negative points>, "balance": int}``"""

POINTS_EXPIRED = "points_expired"
"""What was left of one earned lot expired (one event per lot). data: ``{"contact_id",
"entry": <ledger entry, kind "expire", negative points, source_ref = the lot's earn entry
id>, "balance": int}``"""

TIER_CHANGED = "tier_changed"
"""The member's tier moved (up when earning, down when earnings leave the rolling
365-day window). data: ``{"contact_id", "from_tier", "to_tier", "points_earned_12m": int}``"""

PUBLISHED = (MEMBER_ENROLLED, POINTS_EARNED, POINTS_REDEEMED, POINTS_EXPIRED, TIER_CHANGED)

ENTRY_EVENTS = {"earn": POINTS_EARNED, "redeem": POINTS_REDEEMED, "expire": POINTS_EXPIRED}

# Consumed from ``contacts.events``:
#   contact_created {"contact"}: keep display_name; enrol when consents.loyalty.granted
#   contact_updated {"contact", "changed"}: refresh display_name
#   consent_changed {"contact_id", "channel", "granted", "source", "at", "display_name"}:
#       channel "loyalty": granted -> enrol / re-activate, revoked -> status opted_out
#   contact_erased {"contact_id"}: anonymize the local copy (display_name -> None, erased)
CONTACTS = "contacts"
CONSUMED = ("contact_created", "contact_updated", "consent_changed", "contact_erased")
