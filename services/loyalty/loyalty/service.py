"""The loyalty nameko service: entrypoints only. Rules are in domain.py, persistence and
the crash-safety argument in store.py."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import clock, config, paging
from crm_common.contracts import Id
from crm_common.errors import AlreadyExists, FailedPrecondition, NotFound
from crm_common.ids import derived_id
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.mongo import MongoStore
from pydantic import TypeAdapter

from . import contracts as C
from . import domain
from .events import ENTRY_EVENTS, MemberEnrolled, TierChanged
from .store import LoyaltyStore
from .views import entry_view, member_view

log = logging.getLogger(__name__)

MEMBERS = Gauge("crm_loyalty_members", "Loyalty members by tier", ["tier"])
POINTS_OUTSTANDING = Gauge("crm_loyalty_points_outstanding", "Unspent, unexpired loyalty points of all members")

# A timer's interval is fixed when the class is defined, so it is read here, not from nameko's config.
EXPIRY_INTERVAL_SECONDS = float(config.setting("loyalty", "LOYALTY_EXPIRY_INTERVAL_SECONDS"))
GAUGE_INTERVAL_SECONDS = 30
CONTACTS = "contacts"
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
    OUTBOX_COLLECTIONS = ("member_versions",)
    store = MongoStore(LoyaltyStore)

    # -- helpers (not entrypoints) ----------------------------------------------------
    def _policy(self) -> domain.Policy:
        seconds = self.config.get("LOYALTY_POINTS_TTL_SECONDS")
        if seconds not in (None, ""):
            return domain.Policy(ttl=timedelta(seconds=float(seconds)))
        return domain.Policy(ttl=timedelta(days=float(self.config.get("LOYALTY_POINTS_TTL_DAYS") or 365)))

    def _events(self, contact_id: str):
        """Envelopes announcing a Change; ids derived from what they announce."""
        def make(change: domain.Change, version: int) -> list[dict[str, Any]]:
            st, out = change.state, []
            if change.enrolled:
                out += self.outbox.announce(MemberEnrolled(
                    contact_id=contact_id, member_id=st.member_id, tier=st.tier, enrolled_at=st.enrolled_at),
                    event_id=derived_id("evt", "enrolled", contact_id))
            for entry in change.entries:
                out += self.outbox.announce(ENTRY_EVENTS[entry["kind"]](
                    contact_id=contact_id, entry=entry_view(entry), balance=entry["balance_after"]),
                    event_id=derived_id("evt", entry["_id"]))
            if change.tier_changed:
                now = clock.now()
                out += self.outbox.announce(TierChanged(
                    contact_id=contact_id, from_tier=change.tier_from, to_tier=st.tier,
                    points_earned_12m=domain.points_earned_12m(st.lots, now), changed_at=now),
                    event_id=derived_id("evt", "tier", contact_id, str(version)))
            return out
        return make

    def _mutate(self, contact_id: str, op):
        done = self.store.mutate(contact_id, op, self._events(contact_id))
        if done.staged:
            self.outbox.publish(self.store.versions, done.doc_id, done.staged)
        return done

    def _member(self, contact_id: str) -> dict[str, Any]:
        head = self.store.head(contact_id)
        if head is None:
            raise _not_member(contact_id)
        return member_view(contact_id, head.version, head.state, self.store.profile(contact_id), clock.now())

    def _enroll(self, contact_id: str, *, consent_at=None, activate: bool = False) -> None:
        def op(head):
            if head is None:
                return domain.enroll(contact_id, clock.now(), consent_at=consent_at)
            if activate:
                return domain.set_consent(head.state, True, consent_at)
            return None
        self._mutate(contact_id, op)

    def _written_result(self, contact_id: str, done) -> dict[str, Any]:
        """The entry this call wrote and the member as of that write, from memory: no
        re-read of the chain (a quarter of an earn's database commands). A request that
        was already applied reads what the first one wrote."""
        change = done.change
        entry = next((e for e in change.entries if e["_id"] == change.result_entry_id), None)
        if change.duplicate_of or entry is None:
            return self._entry_result(contact_id, change.duplicate_of or change.result_entry_id)
        member = member_view(contact_id, done.version, change.state, self.store.profile(contact_id), clock.now())
        return {"entry": entry_view(entry), "member": member}

    def _entry_result(self, contact_id: str, entry_id: str) -> dict[str, Any]:
        entry = self.store.find_entry(contact_id, entry_id)
        if entry is None:  # applied, but its ledger copy vanished: should never happen
            raise FailedPrecondition(f"ledger entry {entry_id} is not available yet, retry", {"entry_id": entry_id})
        return {"entry": entry_view(entry), "member": self._member(contact_id)}

    # -- RPC ------------------------------------------------------------------------------
    @rpc(C.Enroll)
    def enroll(self, req: C.Enroll):
        contact_id = req.contact_id
        if self.store.head(contact_id) is None and self.store.is_erased(contact_id):
            raise FailedPrecondition(f"contact {contact_id} was erased", {"contact_id": contact_id})
        self._enroll(contact_id)
        return self._member(contact_id)

    @rpc(C.GetMember)
    def get_member(self, req: C.GetMember):
        return self._member(req.contact_id)

    @rpc(C.EarnPoints)
    def earn_points(self, req: C.EarnPoints):
        contact_id, source, source_ref, money = req.contact_id, req.source, req.source_ref, req.amount
        entry_id = domain.earn_entry_id(source, source_ref)
        existing = self.store.ledger_entry(entry_id)
        if existing is not None:
            if existing["contact_id"] != contact_id:
                raise AlreadyExists(f"purchase {source}/{source_ref} already earned points for another contact",
                                    {"existing_id": entry_id})
            return self._entry_result(contact_id, entry_id)
        if self.store.is_erased(contact_id):
            raise FailedPrecondition(f"contact {contact_id} was erased", {"contact_id": contact_id})
        policy = self._policy()

        def op(head):
            if head is None:
                raise _not_member(contact_id)
            return domain.earn(head.state, contact_id, clock.now(), policy, source=source,
                               source_ref=source_ref, amount=money)
        return self._written_result(contact_id, self._mutate(contact_id, op))

    @rpc(C.RedeemPoints)
    def redeem_points(self, req: C.RedeemPoints):
        contact_id, request_id = req.contact_id, req.idempotency_key
        entry_id = domain.redeem_entry_id(contact_id, request_id)
        if request_id and self.store.ledger_entry(entry_id) is not None:
            return self._entry_result(contact_id, entry_id)
        policy = self._policy()

        def op(head):
            if head is None:
                raise _not_member(contact_id)
            return domain.redeem(head.state, contact_id, clock.now(), policy, points=req.points, reason=req.reason,
                                 request_id=request_id, entry_id=entry_id)
        return self._written_result(contact_id, self._mutate(contact_id, op))

    @rpc(C.ListLedger)
    def list_ledger(self, req: C.ListLedger):
        cursor = paging.decode(req.page_token, seq=int)
        if self.store.head(req.contact_id) is None:
            raise _not_member(req.contact_id)
        docs = self.store.list_ledger(req.contact_id, req.size + 1, cursor and cursor["seq"])
        page, token = paging.page(docs, req.size, lambda d: {"seq": d["seq"]})
        return {"entries": [entry_view(d) for d in page], "next_page_token": token}

    @rpc
    def expire_due_points(self):
        """Expire due lots and move tiers of every member that is due; safe on many replicas
        (each member version is claimed by one insert). Returns what THIS call expired."""
        policy, members, points = self._policy(), 0, 0
        for contact_id in self.store.due_members(clock.now()):
            done = self._mutate(contact_id, lambda head: domain.review(head.state, contact_id, clock.now(), policy)
                                if head is not None else None)
            expired = -sum(e["points"] for e in (done.change.entries if done.staged else ())
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

    @timer(interval=5)
    def materialize_ledger(self):
        self.store.materialize_leftovers()

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        stats = self.store.member_stats()
        for tier in domain.TIERS:
            MEMBERS.labels(tier).set(stats.get(tier, {}).get("members", 0))
        POINTS_OUTSTANDING.set(sum(row.get("points", 0) for row in stats.values()))

    # -- events from contacts ---------------------------------------------------------------
    @handles(CONTACTS, "contact_created")
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

    @handles(CONTACTS, "contact_updated")
    def on_contact_updated(self, event):
        contact = event["data"]["contact"]
        _contact_id(contact["id"])
        self.store.save_contact(contact)

    @handles(CONTACTS, "consent_changed")
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
            self._mutate(contact_id, lambda head: domain.set_consent(head.state, False, at)
                         if head is not None else None)  # never enrolled: nothing to do

    @handles(CONTACTS, "contact_erased")
    def on_contact_erased(self, event):
        self.store.erase(_contact_id(event["data"]["contact_id"]))
