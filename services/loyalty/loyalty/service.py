"""The loyalty nameko service: entrypoints, and the order of the writes behind them.
Rules are in domain.py, what each RPC accepts in contracts.py, persistence and the
crash-safety argument in store.py."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import clock, config, paging
from crm_common.contracts import Id
from crm_common.errors import AlreadyExists, CrmError, FailedPrecondition, NotFound, VersionConflict
from crm_common.ids import derived_id
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.keylock import KeyLocks
from crm_common.nameko.mongo import MongoStore
from crm_common.retry import on_conflict
from pydantic import TypeAdapter

from . import contracts as C
from . import domain
from .events import ENTRY_EVENTS, MemberEnrolled, TierChanged
from .store import LEDGER, MEMBERS, PENDING, LoyaltyStore, Member, Written
from .views import entry_view, member_view

log = logging.getLogger(__name__)

MEMBERS_BY_TIER = Gauge("crm_loyalty_members", "Loyalty members by tier", ["tier"])
POINTS_OUTSTANDING = Gauge("crm_loyalty_points_outstanding", "Unspent, unexpired loyalty points of all members")

# A timer's interval is fixed when the class is defined, so it is read here, not from nameko's config.
EXPIRY_INTERVAL_SECONDS = float(config.setting("loyalty", "LOYALTY_EXPIRY_INTERVAL_SECONDS"))
GAUGE_INTERVAL_SECONDS = 30
CONTACTS = "contacts"
# Another replica writing the same member makes a guarded write lose; it re-reads and
# applies again (within this process, writers of one member queue: KeyLocks).
WRITE_ATTEMPTS = 20
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


@dataclass(eq=False)
class _Queued:
    """One request waiting in a member's turn, and what became of it."""

    op: Any
    started: float
    result: Written | None = None
    error: BaseException | None = None
    batched: bool = False


class LoyaltyService(CrmService):
    name = "loyalty"
    OUTBOX_COLLECTIONS = (MEMBERS, LEDGER)
    store = MongoStore(LoyaltyStore)
    locks = KeyLocks()

    # -- helpers (not entrypoints) ----------------------------------------------------
    def _policy(self) -> domain.Policy:
        seconds = self.config.get("LOYALTY_POINTS_TTL_SECONDS")
        if seconds not in (None, ""):
            return domain.Policy(ttl=timedelta(seconds=float(seconds)))
        return domain.Policy(ttl=timedelta(days=float(self.config.get("LOYALTY_POINTS_TTL_DAYS") or 365)))

    def _events(self, contact_id: str, change: domain.Change, version: int):
        """The envelopes announcing a change: those about the member, and per ledger
        entry its own (ids derived from what they announce, so a relay repeats them)."""
        st, member_events = change.state, []
        if change.enrolled:
            member_events += self.outbox.announce(MemberEnrolled(
                contact_id=contact_id, member_id=st.member_id, tier=st.tier, enrolled_at=st.enrolled_at),
                event_id=derived_id("evt", "enrolled", contact_id))
        if change.tier_changed:
            now = clock.now()
            member_events += self.outbox.announce(TierChanged(
                contact_id=contact_id, from_tier=change.tier_from, to_tier=st.tier,
                points_earned_12m=domain.points_earned_12m(st.lots, now), changed_at=now),
                event_id=derived_id("evt", "tier", contact_id, str(version)))
        entry_events = {entry["_id"]: self.outbox.announce(ENTRY_EVENTS[entry["kind"]](
            contact_id=contact_id, entry=entry_view(entry), balance=entry["balance_after"]),
            event_id=derived_id("evt", entry["_id"])) for entry in change.entries}
        return member_events, entry_events

    def _mutate(self, contact_id: str, op) -> Written:
        """Read the member, apply ``op`` (pure; a typed error is the answer, None or a
        no-op change writes nothing), write it back guarded by its version, insert its
        ledger entries, publish. Optimistic while nobody else in this process writes the
        member; a write that lost a race, and every request arriving while others queue
        for the member, takes its turn (KeyLocks) instead of racing."""
        started = time.monotonic()
        if not self.locks.busy(contact_id):
            before = self.store.member(contact_id)
            change = op(before)
            if change is None or change.is_noop:
                return Written(change, before)
            try:
                return self._published(self._store(contact_id, before, change))
            except VersionConflict:
                pass
        return self._published(self._store_in_turn(contact_id, op, started))

    @on_conflict(attempts=WRITE_ATTEMPTS)
    def _store_in_turn(self, contact_id: str, op, started: float) -> Written:
        """Under the member's turn (KeyLocks), in one write for everyone queued: the holder
        applies each queued request's ``op`` in arrival order to the running state (a typed
        error answers that request alone), writes the combined change once, guarded by the
        version it started from, and leaves each request its own result; a waiter whose
        request is done when its turn comes leaves at once. A burst of requests for one
        member costs one write per batch instead of a storm of lost races.

        The turn also remembers the member as its last holder read or wrote it, and from
        when: a state that held after every queued request began is as good as a new read
        (they may take effect at that instant). If another replica wrote meanwhile the
        guarded write fails, the batch goes back to the queue and the next attempt reads.
        Each write also drops the staged copies of entries earlier writes put in the ledger."""
        me = _Queued(op, started)
        with self.locks.hold(contact_id, me) as turn:
            if me.result is None and me.error is None:
                self._commit_queued(contact_id, turn, me)
        if me.error is not None:
            raise me.error
        done = me.result
        if done.staged is None or not done.change.entries:
            return done
        done = self._materialized(contact_id, done, can_undo=not me.batched)
        if done.staged is not None:   # in the ledger now: the next write in this turn drops their copies
            turn.done += [e["_id"] for e in done.change.entries]   # (green threads: no lock needed to append)
        return done

    def _commit_queued(self, contact_id: str, turn, me: "_Queued") -> None:
        batch = [q for q in turn.queue if q.result is None and q.error is None]
        turn.queue.clear()
        if turn.last is not None and all(turn.last[1] >= q.started for q in batch):
            before = turn.last[0]
        else:
            at = time.monotonic()
            before = self.store.member(contact_id)
            turn.last = (before, at)
        member, applied = before, []
        for q in batch:
            try:
                change = q.op(member)
            except CrmError as exc:
                q.error = exc
                continue
            if change is None or change.is_noop:
                q.result = Written(change, member)
                continue
            applied.append((q, change))
            member = Member(contact_id, member.version if member else 0, change.state,
                            member.display_name if member else None, member.erased if member else False)
        if not applied:
            return
        at = time.monotonic()
        forget, turn.done = turn.done, []
        combined = domain.combine([c for _, c in applied])
        try:
            done = self._store(contact_id, before, combined, materialize=False, forget=forget)
        except VersionConflict:
            turn.last, turn.done = None, forget + turn.done
            for q, _ in applied:
                if q is not me:
                    q.result = q.error = None
                    turn.queue.insert(0, q)   # their holder will try again
            raise
        turn.last = (done.member, at)
        for i, (q, change) in enumerate(applied):
            ids = {e["_id"] for e in change.entries}
            q.batched = len(applied) > 1
            q.result = Written(change, Member(contact_id, done.member.version, change.state, done.member.display_name,
                                              done.member.erased),
                               done.staged if i == 0 else [], {k: v for k, v in done.entry_events.items() if k in ids},
                               before=before)

    def _store(self, contact_id: str, before: Member | None, change: domain.Change, *,
               materialize: bool = True, forget: list[str] = ()) -> Written:
        """The guarded write, then its ledger entries (see store.py)."""
        now = clock.now()
        member_events, entry_events = self._events(contact_id, change, (before.version if before else 0) + 1)
        after = self.store.write(contact_id, before, change, member_events, entry_events, now, forget=forget)
        done = Written(change, after, member_events, entry_events, before=before)
        return self._materialized(contact_id, done) if materialize else done

    def _materialized(self, contact_id: str, done: Written, *, can_undo: bool = True) -> Written:
        """Insert the write's entries into the ledger; undone when an entry's id is there
        already (a purchase that earned before). When the write was not this change's
        alone (``can_undo`` False: a batch; undoing it would take back the others' changes
        too), or when the undo finds the member moved on, the entries are voided instead
        (a change of its own)."""
        before = done.before
        collided = self.store.materialize(contact_id, done.change.entries, done.entry_events)
        if not collided:
            return done
        try:
            if not can_undo:
                raise VersionConflict("a batched write: void the entries instead")
            self.store.undo(contact_id, done.member, done.change, before, done.staged, clock.now())
        except VersionConflict:
            ids = {e["_id"] for e in collided}
            self.store.forget_entries(contact_id, sorted(ids))
            self._mutate(contact_id, lambda m: domain.void(m.state, contact_id, clock.now(), self._policy(),
                                                           [e for e in done.change.entries if e["_id"] in ids]))
        return Written(domain.collided(before.state, done.change, collided[0]["_id"]), before, None)

    def _published(self, done: Written) -> Written:
        """Publish what a write staged: the member's events (cleared from its outbox) and
        each entry's (cleared from the entry's). The staged copies of the entries on the
        member are dropped later (see _store_in_turn and materialize_leftovers)."""
        if done.staged:
            self.outbox.publish(self.store.members, done.member.contact_id, done.staged)
        for entry_id, events in (done.entry_events or {}).items():
            self.outbox.publish(self.store.ledger, entry_id, events)
        return done

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
        return self._mutate(contact_id, op)

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
        return self._written_result(contact_id, self._mutate(contact_id, op))

    @rpc(C.RedeemPoints)
    def redeem_points(self, req: C.RedeemPoints):
        contact_id, request_id, policy = req.contact_id, req.idempotency_key, self._policy()
        entry_id = domain.redeem_entry_id(contact_id, request_id)

        def op(member):
            if member is None:
                raise _not_member(contact_id)
            return domain.redeem(member.state, contact_id, clock.now(), policy, points=req.points, reason=req.reason,
                                 request_id=request_id, entry_id=entry_id)
        return self._written_result(contact_id, self._mutate(contact_id, op))

    @rpc(C.ListLedger)
    def list_ledger(self, req: C.ListLedger):
        cursor = paging.decode(req.page_token, seq=int)
        if self.store.member(req.contact_id) is None:
            raise _not_member(req.contact_id)
        docs = self.store.list_ledger(req.contact_id, req.size + 1, cursor and cursor["seq"])
        page, token = paging.page(docs, req.size, lambda d: {"seq": d["seq"]})
        return {"entries": [entry_view(d) for d in page], "next_page_token": token}

    @rpc
    def expire_due_points(self):
        """Expire due lots and move tiers of every member that is due; safe with several
        replicas (each review is one guarded write: of two racing, one applies it and the
        other finds nothing left to do). Returns what THIS call expired."""
        policy, members, points = self._policy(), 0, 0
        for contact_id in self.store.due_members(clock.now()):
            done = self._mutate(contact_id, lambda member: domain.review(member.state, contact_id, clock.now(), policy)
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
        self.materialize_leftovers()

    def materialize_leftovers(self) -> int:
        """Entries staged on a member for a while: insert them (after a crash between the
        member write and the ledger that is what repairs it; otherwise they are there and
        the insert is a no-op), then drop the staged copies. One whose id turned out to
        be taken is voided; its events never leave (they went with it)."""
        done = 0
        for doc in self.store.leftovers():
            contact_id = doc["_id"]
            staged = list((doc.get(PENDING) or {}).values())
            entries = [s["entry"] for s in staged]
            collided = {e["_id"] for e in self.store.materialize(
                contact_id, entries, {s["entry"]["_id"]: s["events"] for s in staged})}
            self.store.forget_entries(contact_id, [e["_id"] for e in entries])
            if collided:
                self._mutate(contact_id, lambda member: domain.void(member.state, contact_id, clock.now(),
                                                                    self._policy(),
                                                                    [e for e in entries if e["_id"] in collided])
                             if member is not None else None)
            done += len(entries)
        return done

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def update_gauges(self):
        stats = self.store.member_stats()
        for tier in domain.TIERS:
            MEMBERS_BY_TIER.labels(tier).set(stats.get(tier, {}).get("members", 0))
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
            self._mutate(contact_id, lambda member: domain.set_consent(member.state, False, at)
                         if member is not None else None)  # never enrolled: nothing to do

    @handles(CONTACTS, "contact_erased")
    def on_contact_erased(self, event):
        self.store.erase(_contact_id(event["data"]["contact_id"]))
