"""The loyalty nameko service: entrypoints, and the order of the writes behind them.
Rules are in domain.py, what each RPC accepts in contracts.py, persistence and the
crash-safety argument in store.py."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import clock, config, paging
from crm_common.contracts import Id
from crm_common.errors import AlreadyExists, FailedPrecondition, NotFound
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.keylock import KeyLocks
from crm_common.nameko.mongo import MongoStore
from pydantic import TypeAdapter

from . import contracts as C
from . import domain, orders
from .store import LEDGER, MEMBERS, LoyaltyStore, Member, Written
from .views import entry_view, member_view
from .writes import MemberWrites

log = logging.getLogger(__name__)

MEMBERS_BY_TIER = Gauge("crm_loyalty_members", "Loyalty members by tier", ["tier"])
POINTS_OUTSTANDING = Gauge("crm_loyalty_points_outstanding", "Unspent, unexpired loyalty points of all members")

# A timer's interval is fixed when the class is defined, so it is read here, not from nameko's config.
EXPIRY_INTERVAL_SECONDS = float(config.setting("loyalty", "LOYALTY_EXPIRY_INTERVAL_SECONDS"))
GAUGE_INTERVAL_SECONDS = 30
FORGET_INTERVAL_SECONDS = 3600
CONTACTS = "contacts"
SALES = "sales"
_ID = TypeAdapter(Id)


def _contact_id(value: Any) -> str:
    """An id from another service's event, checked as strictly as an RPC argument."""
    return _ID.validate_python(value)


def _not_member(contact_id: str) -> NotFound:
    return NotFound(f"contact {contact_id} is not a loyalty member", {"contact_id": contact_id})


def _parse_at(value: Any, fallback: Any):
    for candidate in (value, fallback):
        try:
            return clock.from_iso(candidate)
        except (TypeError, ValueError):
            continue
    return clock.now()


class LoyaltyService(CrmService):
    name = "loyalty"
    OUTBOX_COLLECTIONS = (MEMBERS, LEDGER)
    PERSONAL_DATA = {"member": (MEMBERS, "_id"), "ledger": (LEDGER, "contact_id"), "profile": ("profiles", "_id")}
    store = MongoStore(LoyaltyStore)
    locks = KeyLocks()

    # -- helpers (not entrypoints) ----------------------------------------------------
    def _writes(self) -> MemberWrites:
        return MemberWrites(self.store, self.outbox, self.locks, self._policy())

    def _policy(self) -> domain.Policy:
        seconds = self.config.get("LOYALTY_POINTS_TTL_SECONDS")
        if seconds not in (None, ""):
            return domain.Policy(ttl=timedelta(seconds=float(seconds)))
        return domain.Policy(ttl=timedelta(days=float(self.config.get("LOYALTY_POINTS_TTL_DAYS") or 365)))

    def _member(self, contact_id: str, member: Member | None = None) -> dict[str, Any]:
        member = member or self.store.member(contact_id)
        if member is None:
            raise _not_member(contact_id)
        return member_view(member, clock.now())

    def _enroll(self, contact_id: str, *, consent_at=None, activate: bool = False) -> Written:
        def op(member):
            if member is None:
                return domain.enroll(contact_id, clock.now(), consent_at=consent_at)
            if activate:
                return domain.set_consent(member.state, True, consent_at)
            return None
        return self._writes().apply(contact_id, op)

    def _written_result(self, contact_id: str, done: Written) -> dict[str, Any]:
        """The entry this call wrote and the member as of that write, from memory. A
        request that was applied before reads what the first one wrote; a purchase that
        earned for another contact is ALREADY_EXISTS."""
        change = done.change
        entry = next((e for e in change.entries if e["_id"] == change.result_entry_id), None)
        if change.duplicate_of or entry is None:
            return self._entry_result(contact_id, change.duplicate_of or change.result_entry_id)
        return {"entry": entry_view(entry), "member": member_view(done.member, clock.now())}

    def _entry_result(self, contact_id: str, entry_id: str) -> dict[str, Any]:
        entry = self.store.find_entry(contact_id, entry_id)
        if entry is None:  # applied, but its ledger copy vanished: should never happen
            raise FailedPrecondition(f"ledger entry {entry_id} is not available yet, retry", {"entry_id": entry_id})
        if entry["contact_id"] != contact_id:
            raise AlreadyExists(f"{entry['source']}/{entry['source_ref']} already earned points for another contact",
                                {"existing_id": entry_id})
        return {"entry": entry_view(entry), "member": self._member(contact_id)}

    # -- RPC ------------------------------------------------------------------------------
    @rpc(C.Enroll)
    def enroll(self, req: C.Enroll):
        contact_id = req.contact_id
        member = self.store.member(contact_id)
        if member is None and self.store.is_erased(contact_id):
            raise FailedPrecondition(f"contact {contact_id} was erased", {"contact_id": contact_id})
        done = self._enroll(contact_id)
        return self._member(contact_id, done.member)

    @rpc(C.GetMember)
    def get_member(self, req: C.GetMember):
        return self._member(req.contact_id)

    @rpc(C.EarnPoints)
    def earn_points(self, req: C.EarnPoints):
        contact_id, policy = req.contact_id, self._policy()

        def op(member):
            if member is None:
                raise _not_member(contact_id)
            if member.erased:
                raise FailedPrecondition(f"contact {contact_id} was erased", {"contact_id": contact_id})
            return domain.earn(member.state, contact_id, clock.now(), policy, source=req.source,
                               source_ref=req.source_ref, amount=req.amount)
        return self._written_result(contact_id, self._writes().apply(contact_id, op))

    @rpc(C.RedeemPoints)
    def redeem_points(self, req: C.RedeemPoints):
        contact_id, request_id, policy = req.contact_id, req.idempotency_key, self._policy()
        entry_id = domain.redeem_entry_id(contact_id, request_id)

        def op(member):
            if member is None:
                raise _not_member(contact_id)
            return domain.redeem(member.state, contact_id, clock.now(), policy, points=req.points, reason=req.reason,
                                 request_id=request_id, entry_id=entry_id)
        return self._written_result(contact_id, self._writes().apply(contact_id, op))

    @rpc(C.ListLedger)
    def list_ledger(self, req: C.ListLedger):
        cursor = paging.decode(req.page_token, seq=int)
        if self.store.member(req.contact_id) is None:
            raise _not_member(req.contact_id)
        docs = self.store.list_ledger(req.contact_id, req.size + 1, cursor and cursor["seq"])
        page, token = paging.page(docs, req.size, lambda d: {"seq": d["seq"]})
        return {"entries": [entry_view(d) for d in page], "next_page_token": token}

    @rpc(C.ListMembers)
    def list_members(self, req: C.ListMembers):
        """Internal: every member by contact id, with when it last changed (``updated_at``),
        for consumers that rebuild their read model (marketing's audience)."""
        page, token = paging.by_id(req.page_token, req.size, self.store.page_members)
        now = clock.now()
        return {"members": [{**member_view(Member.from_doc(d), now), "updated_at": clock.to_iso(d["updated_at"])}
                            for d in page], "next_page_token": token}

    @rpc
    def expire_due_points(self):
        """Expire due lots and move tiers of every member that is due; safe with several
        replicas (each review is one guarded write: of two racing, one applies it and the
        other finds nothing left to do). Returns what THIS call expired."""
        policy, members, points = self._policy(), 0, 0
        for contact_id in self.store.due_members(clock.now()):
            done = self._writes().apply(contact_id, lambda member: domain.review(member.state, contact_id, clock.now(), policy)
                                if member is not None else None)
            expired = -sum(e["points"] for e in (done.change.entries if done.entry_events else ())
                           if e["kind"] == "expire")
            if expired:
                members += 1
                points += expired
        return {"expired_members": members, "points": points}

    # -- timers ---------------------------------------------------------------------------
    @timer(interval=EXPIRY_INTERVAL_SECONDS)
    def expire_points_timer(self):
        result = self.expire_due_points()
        if result["points"]:
            log.info("expired %(points)d points of %(expired_members)d members", result)

    def before_relay(self):
        """Entries a crashed write left staged go into the ledger before its events are
        re-published (a voided change's events must never leave)."""
        self._writes().repair_leftovers()

    @timer(interval=FORGET_INTERVAL_SECONDS)
    def forget_old_refunds(self):
        """Refunds are remembered for a paid event that might still come late; after the
        lots' retention it would not matter (store.py, "Refunds ...")."""
        self.store.forget_refunds(clock.now() - self._policy().retention)

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        stats = self.store.member_stats()
        for tier in domain.TIERS:
            MEMBERS_BY_TIER.labels(tier).set(stats.get(tier, {}).get("members", 0))
        POINTS_OUTSTANDING.set(sum(row.get("points", 0) for row in stats.values()))

    # -- events from contacts ---------------------------------------------------------------
    # Each is idempotent by construction, so no handled-event markers: the profile keeps
    # the newest contact version, a consent decision applies only if newer than the last
    # one, enrolling an enrolled member and erasing an erased one change nothing.
    @handles(CONTACTS, "contact_created", idempotent=True)
    def on_contact_created(self, event):
        contact = event["data"]["contact"]
        contact_id = _contact_id(contact["id"])
        self.store.save_contact(contact)
        consent = (contact.get("consents") or {}).get("loyalty") or {}
        if consent.get("granted") is True and not contact.get("erased"):
            at = _parse_at(consent.get("at"), event.get("occurred_at"))
            if self.store.note_consent(contact_id, True, at, contact.get("display_name")) \
                    and not self.store.is_erased(contact_id):
                self._enroll(contact_id, consent_at=at)

    @handles(CONTACTS, "contact_updated", idempotent=True)
    def on_contact_updated(self, event):
        contact = event["data"]["contact"]
        _contact_id(contact["id"])
        self.store.save_contact(contact)

    @handles(CONTACTS, "consent_changed", idempotent=True)
    def on_consent_changed(self, event):
        data = event["data"]
        if data.get("channel") != "loyalty":
            return
        contact_id = _contact_id(data["contact_id"])
        granted = data.get("granted") is True
        at = _parse_at(data.get("at"), event.get("occurred_at"))
        if not self.store.note_consent(contact_id, granted, at, data.get("display_name")):
            return  # a newer decision was applied already
        if granted:
            if not self.store.is_erased(contact_id):
                self._enroll(contact_id, consent_at=at, activate=True)
        else:
            self._writes().apply(contact_id, lambda member: domain.set_consent(member.state, False, at)
                         if member is not None else None)  # never enrolled: nothing to do

    @handles(CONTACTS, "contact_erased", idempotent=True)
    def on_contact_erased(self, event):
        self.store.erase(_contact_id(event["data"]["contact_id"]))

    # -- events from sales ----------------------------------------------------------------
    # Idempotent by construction, so no handled-event markers: an order earns once (its
    # lot, and the ledger, by an id derived from the order), a refund is remembered once
    # (by order id) and taken back once (its lot is marked in the same guarded write).
    @handles(SALES, "order_paid", idempotent=True)
    def on_order_paid(self, event):
        order, policy = orders.paid(event["data"]), self._policy()
        done = self._writes().apply(order.contact_id, orders.earn(order, policy))
        if done.member is None:
            return   # not a member: nothing earned, nothing to take back
        refund = self.store.refund(order.order_id)   # AFTER earning: a refund handled first is seen here
        if refund is not None:
            self._writes().apply(order.contact_id, orders.reverse(order.order_id, order.contact_id,
                                                                  refund["reason"], policy))

    @handles(SALES, "order_refunded", idempotent=True)
    def on_order_refunded(self, event):
        order = orders.refunded(event["data"])
        # BEFORE taking back: a payment handled after this reads it and takes back itself
        self.store.note_refund(order.order_id, order.contact_id, order.refund_reason, clock.now())
        self._writes().apply(order.contact_id, orders.reverse(order.order_id, order.contact_id,
                                                              order.refund_reason, self._policy()))
