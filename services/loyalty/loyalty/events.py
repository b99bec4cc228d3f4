"""Events of the loyalty service, published on ``loyalty.events``; each also puts a line
on the contact's timeline (crm_common.timeline). Event ids are derived from what they
announce (a ledger entry, an enrolment, a member version), so a relayed duplicate
carries the same ``event_id`` and consumers drop it.

A ``<ledger entry>`` is ``{"id": "led_...", "contact_id", "kind":
"earn"|"redeem"|"expire"|"reverse"|"settle", "points" (the balance's change: negative but
for earn), "balance_after", "owed" (the change of the points owed: + when a refund took
more than the balance held, - when an earn paid it), "owed_after", "source",
"source_ref", "reason", "amount": money|null, "occurred_at", "principal", "request_id"}``
(``owed`` and ``owed_after`` since version 2).

Consumed from ``contacts.events`` (see the registry): contact_created (keep the display
name; enrol when consents.loyalty.granted), contact_updated (refresh the display name),
consent_changed (channel loyalty: granted -> enrol / re-activate, revoked -> opted_out,
points kept), contact_erased (anonymize the local copy). From ``sales.events``:
order_paid (an active member earns for the order: source "order", source_ref the order
id) and order_refunded (the order's points are taken back; loyalty.orders says how, in
whichever order the two arrive).
"""
from __future__ import annotations

from typing import Any, ClassVar

from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.timeline import Reference, TimelineFact


class MemberEnrolled(Event):
    """A contact became a loyalty member (explicit ``enroll`` or consent announced by contacts)."""

    type: ClassVar[str] = "member_enrolled"
    contact_id: Id
    member_id: str
    tier: str
    enrolled_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self.fact(occurred_at=self.enrolled_at, summary=f"Enrolled in the loyalty club ({self.tier})",
                         reference=Reference(type="member", id=self.member_id), data={"tier": self.tier})


class _EntryEvent(Event):
    contact_id: Id
    entry: dict[str, Any]       # <ledger entry>
    balance: int                # the member's balance right after this entry

    def _fact(self, summary: str) -> TimelineFact:
        source = {k: self.entry[k] for k in ("source", "source_ref") if self.entry.get(k)}
        return self.fact(occurred_at=self.entry["occurred_at"], summary=summary,
                         reference=Reference(type="ledger_entry", id=self.entry["id"]),
                         data={"points": self.entry["points"], "balance": self.balance,
                               "points_owed": self.entry.get("owed_after") or 0, **source})


class PointsEarned(_EntryEvent):
    """A purchase earned points (once per ``(source, source_ref)``; a paid order's
    source is "order" and its source_ref the order id)."""

    type: ClassVar[str] = "points_earned"
    version: ClassVar[int] = 2

    def timeline(self) -> TimelineFact:
        # what a person recognizes: "order WEB-1001" (the reason of an order's earn), else where from
        what = self.entry.get("reason") or "/".join(
            str(x) for x in (self.entry.get("source"), self.entry.get("source_ref")) if x)
        return self._fact(f"Earned {self.entry['points']} points" + (f" ({what})" if what else ""))


class PointsRedeemed(_EntryEvent):
    """Points were spent (the entry's points are negative)."""

    type: ClassVar[str] = "points_redeemed"
    version: ClassVar[int] = 2

    def timeline(self) -> TimelineFact:
        reason = self.entry.get("reason")
        return self._fact(f"Redeemed {-self.entry['points']} points" + (f" ({reason})" if reason else ""))


class PointsExpired(_EntryEvent):
    """What was left of one earned lot expired (one event per lot; the entry's
    source_ref is the lot's earn entry id)."""

    type: ClassVar[str] = "points_expired"
    version: ClassVar[int] = 2

    def timeline(self) -> TimelineFact:
        return self._fact(f"{-self.entry['points']} points expired")


class PointsReversed(_EntryEvent):
    """A refunded purchase's points were taken back (once per purchase): ``-points`` from
    the balance, and ``owed`` more than the balance held, recorded as owed and paid
    from later earnings (points_settled). Its points no longer count toward the tier."""

    type: ClassVar[str] = "points_reversed"

    def timeline(self) -> TimelineFact:
        owed = self.entry.get("owed") or 0
        taken = -self.entry["points"] + owed
        reason = self.entry.get("reason")
        return self._fact(f"{taken} points taken back" + (f" ({reason})" if reason else "")
                          + (f": {owed} of them owed, to be settled from future earnings" if owed else ""))


class PointsSettled(_EntryEvent):
    """An earn paid points owed (right after its points_earned, same purchase): the
    entry's ``-points`` went to what a refund left owed, not to the balance."""

    type: ClassVar[str] = "points_settled"

    def timeline(self) -> TimelineFact:
        left = self.entry.get("owed_after") or 0
        return self._fact(f"{-self.entry['points']} of these points paid back points owed after a refund"
                          + (f" ({left} still owed)" if left else " (nothing owed any more)"))


class TierChanged(Event):
    """The member's tier moved (up when earning, down when earnings leave the rolling
    365-day window)."""

    type: ClassVar[str] = "tier_changed"
    contact_id: Id
    from_tier: str
    to_tier: str
    points_earned_12m: int
    changed_at: Timestamp

    def timeline(self) -> TimelineFact:
        return self.fact(occurred_at=self.changed_at, summary=f"Tier changed: {self.from_tier} → {self.to_tier}",
                         data={"from_tier": self.from_tier, "to_tier": self.to_tier,
                               "points_earned_12m": self.points_earned_12m})


ENTRY_EVENTS: dict[str, type[_EntryEvent]] = {"earn": PointsEarned, "redeem": PointsRedeemed,
                                              "expire": PointsExpired, "reverse": PointsReversed,
                                              "settle": PointsSettled}
