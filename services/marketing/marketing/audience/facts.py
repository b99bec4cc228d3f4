"""The compact projection of an audience document that segment rules read: short keys,
times as Unix seconds, only what a condition can ask about. It is stored twice: in the
audience document (``f``) and, beside its version and memberships, in the page that holds
the contact (``audience.store``), where a full evaluation reads it: 100,000 contacts are
a few hundred page documents instead of 100,000 documents.

Keys (``None``/absent when unknown):

=====  ==========================================  =====  =========================================
ls     lifecycle stage                             ti     tier index (0 none .. 4 platinum)
tg     tags                                        lm     loyalty member
co     country (upper case)                        pb     points balance
ci     city (case-folded)                          oc     paid orders, lifetime
la     language of the locale                      ts     lifetime spent ``{currency: minor}``
ge     gender                                      fo/lo  first / last paid order (s)
ow     owner                                       ro     recent paid orders ``[{t: s, c: currency, a: minor}]``
ed     domain of the primary email                 ot     open tickets
he/hp  has an email / a phone                      cq     last satisfaction score (0: none)
cn     channels with consent                       op/ck  ``{campaign_id: s}`` opened / clicked
cf     custom fields                               es     engagement score
ca     contact created (s)                         lop/lck  last open / last click (s)
bd     birthday ``MM-DD``                          tz     time zone (IANA)
pc/pt  preferred channel / contact time            va     what the customer values
x      erased
=====  ==========================================  =====  =========================================
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..segments.rules import TIERS
from . import state as S


def _s(at: datetime | None) -> int | None:
    return int(at.timestamp()) if at is not None else None


def project(doc: dict[str, Any]) -> dict[str, Any]:
    """The facts of one audience document."""
    contact = doc.get("contact") or {}
    consents = doc.get("consents") or {}
    purchases = doc.get("purchases") or {}
    loyalty = doc.get("loyalty") or {}
    tickets = doc.get("tickets") or {}
    engagement = doc.get("engagement") or {}
    email = contact.get("email") or ""
    locale = contact.get("locale") or ""
    f: dict[str, Any] = {
        "ls": contact.get("lifecycle_stage"),
        "tg": list(contact.get("tags") or []),
        "co": (contact.get("country") or "").upper() or None,
        "ci": (contact.get("city") or "").casefold() or None,
        "la": locale.split("-")[0].lower() or None,
        "ge": contact.get("gender"),
        "ow": contact.get("owner"),
        "ed": email.rpartition("@")[2].lower() or None,
        "he": bool(email),
        "hp": bool(contact.get("phone")),
        "cn": sorted(ch for ch, c in consents.items() if (c or {}).get("granted")),
        "cf": dict(contact.get("custom_fields") or {}),
        "ca": _s(contact.get("created_at")),
        "bd": (contact.get("birthday") or "")[5:] or None,
        "pc": S.expectation(doc, "preferred_channel"),
        "pt": S.expectation(doc, "preferred_contact_time"),
        "va": list(S.expectation(doc, "values") or []),
        "tz": S.expectation(doc, "timezone"),
        "ti": TIERS.index(loyalty["tier"]) if loyalty.get("tier") in TIERS else 0,
        "lm": bool(loyalty.get("member")),
        "pb": int(loyalty.get("balance") or 0),
        "oc": int(purchases.get("order_count") or 0),
        "ts": dict(purchases.get("totals") or {}),
        "fo": _s(purchases.get("first_at")),
        "lo": _s(purchases.get("last_at")),
        "ro": sorted(({"t": _s(o["at"]), "c": o["currency"], "a": o["amount"]}
                      for o in (doc.get("orders") or {}).values() if not o.get("refunded") and o.get("currency")),
                     key=lambda o: o["t"]),
        "ot": len(tickets.get("open") or {}),
        "cq": int((tickets.get("csat") or {}).get("score") or 0),
        "op": {k: _s(v) for k, v in (engagement.get("opened") or {}).items()},
        "ck": {k: _s(v) for k, v in (engagement.get("clicked") or {}).items()},
        "es": int(engagement.get("score") or 0),
        "lop": _s(engagement.get("last_opened")),
        "lck": _s(engagement.get("last_clicked")),
        "x": bool(doc.get("erased")),
    }
    # A paid order newer than the last summary counts before the summary catches up.
    recent = [o["t"] for o in f["ro"]]
    if recent and (f["lo"] is None or max(recent) > f["lo"]):
        f["lo"] = max(recent)
    return f
